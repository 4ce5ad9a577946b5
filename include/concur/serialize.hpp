// concur/serialize.hpp: the one serialization layer of concur.
//
// Everything that crosses a process boundary (process pool arguments, results and
// exceptions, Queue, Pipe) is encoded here. What it offers and guarantees:
//
// * concur::serializable<T> is true exactly for the types below; encoding or decoding
//   anything else fails at compile time with a message naming the offending type (the
//   innermost one: the member, not the container holding it).
// * Trivially copyable types that are not pointers (arithmetic, enums, std::byte, plain
//   structs, std::array and C arrays of them) are copied byte for byte. A plain struct is
//   trusted as it is: a pointer member inside it is copied as a meaningless number, and
//   its bool and enum members are not checked. Give such a struct a serialize() instead.
//   A C array decodes as std::array (decode<int[3]> returns std::array<int, 3>).
// * The standard library: std::string and every std::basic_string, vector (including
//   vector<bool>), deque, list, forward_list, array, map, multimap, set, multiset, the
//   unordered four, optional, variant, monostate, tuple, pair, chrono::duration and
//   time_point, complex and bitset, nested arbitrarily. A vector or string of trivially
//   copyable elements is one length and one memcpy.
// * User types with cereal functions (member or free serialize, save/load,
//   save_minimal/load_minimal, versioned or not) go through a cereal archive over the
//   same buffer. The cereal headers for the standard types are included here, so a
//   serialize() can use std members without more includes. When a type is trivially
//   copyable and also has cereal functions, the cereal functions are used. Decoding needs
//   such a type to be default constructible.
// * Sources: std::string_view, std::span<T> and C strings (const char*, and character
//   arrays such as string literals) can be encoded, also inside containers, and are
//   decoded as std::string / std::vector<T>; they cannot be decoded as themselves. A C
//   string stops at its first NUL.
// * Not serializable: raw and member pointers, references, smart pointers, std::function,
//   std::atomic, std::reference_wrapper, threads, mutexes, and any class that is neither
//   trivially copyable nor given cereal functions.
// * Hostile input: decoding never reads out of bounds and checks every length against the
//   bytes left before reserving anything, so memory grows only with elements actually
//   present (elements that occupy no bytes, like std::monostate, are capped per message:
//   kEmptyElementBudget). It rejects invalid bools, optional flags, variant indices and
//   unused bitset bits, and bounds the nesting of user types (kMaxDepth). Every failure is
//   a concur::SerializationError naming what went wrong and the type being decoded, e.g.
//   "concur: truncated message: needed 8 bytes, 3 left while decoding std::vector<int>";
//   only exceptions thrown by a user's own load() pass through unchanged. A Reader that
//   threw is spent; a Writer whose encode threw can be rolled back with truncate().
// * Blocks of at least kOobThreshold (1 MiB) bytes go through the Writer's OobSink when it
//   has one (the process pool moves them through shared memory) instead of being copied
//   into the message.
// * The format is for the same binary on both ends (host byte order, no versioning of its
//   own); it is not a storage format.
#pragma once

#include <cereal/types/array.hpp>
#include <cereal/types/atomic.hpp>
#include <cereal/types/base_class.hpp>
#include <cereal/types/bitset.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/common.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/forward_list.hpp>
#include <cereal/types/functional.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/queue.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/stack.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/valarray.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include "concur/detail/serialize_codec.hpp"

namespace concur {

// True for every type the layer can encode and decode.
template <class T>
concept serializable = detail::codec<T>::enc && detail::codec<T>::dec;

}  // namespace concur
