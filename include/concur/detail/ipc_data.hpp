// concur/detail/ipc_data.hpp: the untyped half of Value<T> and Array<T>.
//
// A data object is `count` elements of `elem_size` bytes in a segment, optionally preceded
// in the same segment by the RLock that guards it, so a locked Value costs one descriptor
// and one mapping, not two. The templates in shared_memory.hpp add the types on top.
#pragma once

#include <cstddef>
#include <cstdint>

#include "concur/detail/ipc_segment.hpp"
#include "concur/detail/ipc_sync.hpp"

namespace concur::detail {

struct DataObject {
  SegmentPtr seg;
  std::size_t offset = 0;   // of the data object's header
  std::byte* data = nullptr;
  std::size_t count = 0;
  std::size_t lock_offset = 0;   // of the RLock's header, when there is one
  MutexState* lock = nullptr;    // null for the raw (lock = false) variants
};

// A zero-filled data object of `count` elements, with its own RLock if `with_lock`.
DataObject make_data_object(IpcKind kind, std::size_t elem_size, std::size_t elem_align,
                            std::size_t count, bool with_lock);
// The data object `handle` names; std::invalid_argument if it is not a `kind` of
// `elem_size`-byte elements.
DataObject attach_data_object(const ShmHandle& handle, IpcKind kind, std::size_t elem_size);
// The export of a data object: its own part, then its lock's if it has one.
ShmHandle data_object_handle(const DataObject& obj, IpcKind kind);

}  // namespace concur::detail
