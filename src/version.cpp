// The library's compiled part starts here; its machinery lives in the subsystem folders.
namespace concur::detail {
extern const char* const library_version;
const char* const library_version = "0.1.0";
}  // namespace concur::detail
