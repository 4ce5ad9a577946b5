// The seed's import finder: which modules does each Python file import? One task per file
// on a thread pool, results collected with as_completed as they finish, then sorted.
// Files that import `typing` are marked "->", as in the original.
//
//   import_finder [directory]      (default: the current directory)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <concur/concur.hpp>

namespace fs = std::filesystem;

struct ImportResult {
  fs::path path;
  std::set<std::string> imports;
  bool focus() const { return imports.count("typing") > 0; }
  bool operator<(const ImportResult& o) const { return path < o.path; }
};

// Turns Python source into statements with comments and string literals removed, so that
// "import" inside a string or a comment is not mistaken for a statement.
std::vector<std::string> logical_lines(const std::string& src) {
  std::vector<std::string> lines;
  std::string cur;
  int depth = 0;  // open brackets: a logical line continues across newlines
  for (std::size_t i = 0; i < src.size(); ++i) {
    char c = src[i];
    if (c == '#') {
      while (i < src.size() && src[i] != '\n') ++i;
      --i;
    } else if (c == '"' || c == '\'') {
      bool triple = src.compare(i, 3, std::string(3, c)) == 0;
      std::size_t j = i + (triple ? 3 : 1);
      while (j < src.size()) {
        if (src[j] == '\\') {
          j += 2;
          continue;
        }
        if (triple ? src.compare(j, 3, std::string(3, c)) == 0 : src[j] == c || src[j] == '\n') break;
        ++j;
      }
      i = std::min(src.size(), j + (triple ? 3 : 1)) - 1;
      cur += " \"\" ";
    } else if (c == '\\' && i + 1 < src.size() && src[i + 1] == '\n') {
      ++i;
      cur += ' ';
    } else if (c == '\n' || c == ';' || (c == ':' && depth == 0)) {
      // "if x: import y" holds a statement after the colon
      if (depth > 0 && c == '\n') {
        cur += ' ';
      } else {
        lines.push_back(std::move(cur));
        cur.clear();
      }
    } else {
      if (c == '(' || c == '[' || c == '{') ++depth;
      if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
      cur += c;
    }
  }
  lines.push_back(std::move(cur));
  return lines;
}

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::string w;
  for (char c : line) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.') {
      w += c;
    } else {
      if (!w.empty()) out.push_back(std::move(w));
      w.clear();
      if (c == ',' || c == '(' || c == ')' || c == '*') out.emplace_back(1, c);
    }
  }
  if (!w.empty()) out.push_back(std::move(w));
  return out;
}

ImportResult find_imports(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string src((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ImportResult result{path, {}};
  for (const auto& line : logical_lines(src)) {
    auto w = words(line);
    if (w.size() >= 2 && w[0] == "import") {
      // import a.b, c as d
      bool expect_name = true;
      for (std::size_t k = 1; k < w.size(); ++k) {
        if (w[k] == ",") expect_name = true;
        else if (w[k] == "as") expect_name = false;
        else if (expect_name) {
          result.imports.insert(w[k]);
          expect_name = false;
        }
      }
    } else if (w.size() >= 4 && w[0] == "from" && w[2] == "import") {
      // from x import y; relative "from . import y" has no module name
      if (w[1].find_first_not_of('.') != std::string::npos)
        result.imports.insert(w[1].substr(w[1].find_first_not_of('.')));
    }
  }
  return result;
}

std::vector<fs::path> all_source(const fs::path& base, const std::string& extension) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(base, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file(ec) && it->path().extension() == extension) out.push_back(it->path());
  }
  return out;
}

int main(int argc, char** argv) {
  fs::path base = argc > 1 ? fs::path(argv[1]) : fs::current_path();
  std::printf("\n%s\n", base.c_str());
  auto start = std::chrono::steady_clock::now();

  std::vector<concur::Future<ImportResult>> analyzers;
  std::vector<ImportResult> analyzed;
  {
    concur::ThreadPoolExecutor pool(24);
    for (auto& path : all_source(base, ".py")) analyzers.push_back(pool.submit(find_imports, path));
    for (auto& worker : concur::as_completed(analyzers)) analyzed.push_back(worker.result());
  }
  std::sort(analyzed.begin(), analyzed.end());

  std::size_t focused = 0;
  for (const auto& example : analyzed) {
    std::ostringstream names;
    names << "{";
    for (auto it = example.imports.begin(); it != example.imports.end(); ++it)
      names << (it == example.imports.begin() ? "'" : ", '") << *it << "'";
    names << "}";
    focused += example.focus();
    std::printf("%-2s %s %s\n", example.focus() ? "->" : "",
                example.path.lexically_relative(base).c_str(), names.str().c_str());
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("Searched %zu files in %s at %.3fms/file (%zu import typing)\n", analyzers.size(),
              base.c_str(), analyzers.empty() ? 0.0 : ms / static_cast<double>(analyzers.size()), focused);
}
