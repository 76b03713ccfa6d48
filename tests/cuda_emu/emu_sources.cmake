# emu_sources.cmake (tests/cuda_emu): ndl_emu_rewrite(OUT_VAR SOURCE...) writes, for each CUDA source,
# a C++ copy under the build tree whose kernel launches k<<<grid, block, shared, stream>>>(args) read
# ndl_emu::launch_kernel(ndl_emu::config(grid, block, shared, stream), "k", k, args) (a #line keeps
# compiler messages on the .cu), and returns the copies. A change to a .cu re-runs CMake.
function(ndl_emu_rewrite out_var)
  set(out "")
  foreach(src IN LISTS ARGN)
    get_filename_component(abs "${src}" ABSOLUTE)
    get_filename_component(name "${src}" NAME_WE)
    file(READ "${abs}" text)
    string(REGEX REPLACE "([A-Za-z_][A-Za-z_0-9]*)<<<([^;]*)>>>\\("
           "ndl_emu::launch_kernel(ndl_emu::config(\\2), \"\\1\", \\1, " text "${text}")
    if(text MATCHES "<<<")
      message(FATAL_ERROR "ndl_emu_rewrite: ${src} has a launch the rewrite does not understand")
    endif()
    set(copy "${CMAKE_CURRENT_BINARY_DIR}/emu/${name}.cc")
    file(CONFIGURE OUTPUT "${copy}" CONTENT "#line 1 \"${abs}\"\n${text}" @ONLY)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${abs}")
    list(APPEND out "${copy}")
  endforeach()
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
