# The layer rule of docs/architecture.md, checked when CMake configures: a folder's library links,
# and a folder's sources include, only folders of a lower layer. A dependency pointing sideways or
# up fails the configuration with the edge named.
#
# astraea_check_layers(LAYERS "kernels" "io" "model" ... "db profiler quality" ...): the layers,
# lowest first; the folders of one layer are separated by spaces. Call it after every folder's
# add_subdirectory; each folder F has the library astraea_F (apps: the astraea-bench executable).
# ROOT is where the folders are (default: the project's source directory).
function(astraea_check_layers)
  cmake_parse_arguments(L "" "ROOT" "LAYERS" ${ARGN})
  if(NOT L_ROOT)
    set(L_ROOT ${PROJECT_SOURCE_DIR})
  endif()
  set(rank 0)
  set(folders "")
  foreach(layer IN LISTS L_LAYERS)
    separate_arguments(names UNIX_COMMAND "${layer}")
    foreach(folder IN LISTS names)
      set(rank_${folder} ${rank})
      list(APPEND folders ${folder})
    endforeach()
    math(EXPR rank "${rank} + 1")
  endforeach()

  set(errors "")
  foreach(folder IN LISTS folders)
    # Links: the library's own and its usage requirements.
    set(target astraea_${folder})
    if(folder STREQUAL "apps")
      set(target astraea-bench)
    endif()
    if(NOT TARGET ${target})
      string(APPEND errors "\n  folder ${folder}/ has no target ${target}")
      continue()
    endif()
    get_target_property(links ${target} LINK_LIBRARIES)
    get_target_property(usage ${target} INTERFACE_LINK_LIBRARIES)
    foreach(dep IN LISTS links usage)
      if(NOT dep MATCHES "^astraea_(.+)$")
        continue()
      endif()
      set(to ${CMAKE_MATCH_1})
      if(DEFINED rank_${to})
        if(NOT rank_${to} LESS rank_${folder})
          string(APPEND errors "\n  ${target} links astraea_${to}: ${folder}/ is layer ${rank_${folder}}, "
                               "${to}/ is layer ${rank_${to}}")
        endif()
      endif()
    endforeach()

    # Includes: every non-test source of the folder (tests may reach a layer up for fixtures).
    file(GLOB_RECURSE sources RELATIVE ${L_ROOT} ${L_ROOT}/${folder}/*.h ${L_ROOT}/${folder}/*.cpp
         ${L_ROOT}/${folder}/*.cu ${L_ROOT}/${folder}/*.cuh)
    foreach(source IN LISTS sources)
      if(source MATCHES "_test\\.cpp$|_fixture\\.h$")
        continue()
      endif()
      file(STRINGS ${L_ROOT}/${source} includes REGEX "^#include \"[a-z_]+/")
      foreach(line IN LISTS includes)
        string(REGEX MATCH "^#include \"([a-z_]+)/" _ "${line}")
        set(to ${CMAKE_MATCH_1})
        if(DEFINED rank_${to} AND NOT to STREQUAL folder AND NOT rank_${to} LESS rank_${folder})
          string(APPEND errors "\n  ${source} includes ${to}/: ${folder}/ is layer ${rank_${folder}}, "
                               "${to}/ is layer ${rank_${to}}")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(errors)
    message(FATAL_ERROR "astraea: dependencies must point down the layers (docs/architecture.md):${errors}")
  endif()
endfunction()
