# Warning flags and sanitizers shared by every target this project builds.
function(concur_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual
    -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough)
  if(CONCUR_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(CONCUR_SANITIZE)
  list(JOIN CONCUR_SANITIZE "," _concur_san)
  add_compile_options(-fsanitize=${_concur_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_concur_san})
  # clang 14 cannot assemble coroutines instrumented by -fsanitize=function (part of
  # `undefined`): "Cannot represent a difference across sections" (llvm#49689).
  if("undefined" IN_LIST CONCUR_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    add_compile_options(-fno-sanitize=function)
  endif()
endif()
