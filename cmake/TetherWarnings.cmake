# Compiler flags every Tether target gets through tether_target_defaults().
add_library(tether_flags INTERFACE)
target_compile_options(tether_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wformat=2
  -Wimplicit-fallthrough -fno-common
  # Designated initializers leave members at their defaults on purpose.
  -Wno-missing-field-initializers)
if(TETHER_WERROR)
  target_compile_options(tether_flags INTERFACE -Werror)
endif()
if(TETHER_SANITIZE)
  target_compile_options(tether_flags INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(tether_flags INTERFACE -fsanitize=address,undefined)
endif()
target_include_directories(tether_flags INTERFACE ${PROJECT_SOURCE_DIR})

function(tether_target_defaults target)
  target_link_libraries(${target} PRIVATE tether_flags)
endfunction()
