# mpsb_add_bundle: compile an mpsb bundle as part of a CMake build.
#
#   mpsb_add_bundle(<target> <manifest> <output>
#                   [ALL]
#                   [MPSBC <executable-or-target>]
#                   [ARGS <mpsbc compile options>...])
#
# Adds a custom command that runs `mpsbc compile <manifest> -o <output> <ARGS>`
# and a custom target <target> that depends on it (built by default with ALL;
# otherwise make something depend on it: add_dependencies(app <target>)).
#
# - <manifest> and <output> are made absolute (relative to the current source
#   and binary folder respectively).
# - The command DEPENDS on the manifest and on every tensor file it lists, so
#   changing a .bin rebuilds the bundle. The list is read from the manifest at
#   configure time (string(JSON), CMake 3.19+): the tensor fields weight, bias,
#   running_mean, running_var as a path string or {"path": ...}, plus any
#   other layer field that is a {"path": ...} object; with --check in ARGS
#   also each layer's probe files ("probe": {"input": ..., "output": ...}).
#   Paths are relative to the manifest's folder. Editing the manifest re-runs the configure step, so
#   the list follows it.
# - MPSBC defaults to the imported mpsb::mpsbc (installed package), else the
#   in-tree mpsbc target, else an `mpsbc` found on PATH. Set it when
#   cross-compiling (an iOS build runs a host mpsbc).
# - The target gets the property MPSB_BUNDLE_FILE = <output>, so
#   $<TARGET_PROPERTY:<target>,MPSB_BUNDLE_FILE> names the bundle.
#
# mpsbc writes to a temporary file beside <output> and renames it, so a failed
# build step never leaves a partial bundle behind.

include_guard(GLOBAL)
# Not cmake_minimum_required: that would reset the includer's policies.
if(CMAKE_VERSION VERSION_LESS 3.19)
  message(FATAL_ERROR "mpsb_add_bundle needs CMake 3.19 or newer (string(JSON))")
endif()

# The tensor files a manifest lists, as absolute paths, in <out_var>; with
# WITH_PROBES also the probe files that `mpsbc compile --check` reads.
function(_mpsb_manifest_tensor_files manifest out_var)
  cmake_parse_arguments(PARSE_ARGV 2 _mtf "WITH_PROBES" "" "")
  file(READ "${manifest}" _json)
  get_filename_component(_folder "${manifest}" DIRECTORY)
  set(_files "")
  string(JSON _layers ERROR_VARIABLE _err GET "${_json}" layers)
  if(_err)
    message(FATAL_ERROR "mpsb_add_bundle: ${manifest}: no \"layers\" array (${_err})")
  endif()
  string(JSON _n ERROR_VARIABLE _err LENGTH "${_layers}")
  if(_err)
    message(FATAL_ERROR "mpsb_add_bundle: ${manifest}: /layers is not an array (${_err})")
  endif()
  set(_roles weight bias running_mean running_var)
  if(_n GREATER 0)
    math(EXPR _last "${_n} - 1")
    foreach(i RANGE ${_last})
      string(JSON _layer GET "${_layers}" ${i})
      string(JSON _type ERROR_VARIABLE _err TYPE "${_layers}" ${i})
      if(NOT _type STREQUAL "OBJECT")
        continue()  # mpsbc reports it, naming /layers/<i>
      endif()
      string(JSON _m LENGTH "${_layer}")
      if(_m EQUAL 0)
        continue()
      endif()
      math(EXPR _mlast "${_m} - 1")
      foreach(j RANGE ${_mlast})
        string(JSON _key MEMBER "${_layer}" ${j})
        string(JSON _vtype TYPE "${_layer}" "${_key}")
        set(_paths "")
        if(_vtype STREQUAL "STRING" AND _key IN_LIST _roles)
          string(JSON _paths GET "${_layer}" "${_key}")
        elseif(_vtype STREQUAL "OBJECT" AND _key STREQUAL "probe")
          if(_mtf_WITH_PROBES)
            foreach(_end input output)
              string(JSON _ptype ERROR_VARIABLE _err TYPE "${_layer}" probe ${_end})
              if(NOT _err AND _ptype STREQUAL "STRING")
                string(JSON _p GET "${_layer}" probe ${_end})
                list(APPEND _paths "${_p}")
              endif()
            endforeach()
          endif()
        elseif(_vtype STREQUAL "OBJECT")
          string(JSON _ptype ERROR_VARIABLE _err TYPE "${_layer}" "${_key}" path)
          if(NOT _err AND _ptype STREQUAL "STRING")
            string(JSON _paths GET "${_layer}" "${_key}" path)
          endif()
        endif()
        foreach(_path IN LISTS _paths)
          if(NOT _path STREQUAL "")
            get_filename_component(_path "${_path}" ABSOLUTE BASE_DIR "${_folder}")
            list(APPEND _files "${_path}")
          endif()
        endforeach()
      endforeach()
    endforeach()
  endif()
  list(REMOVE_DUPLICATES _files)
  set(${out_var} "${_files}" PARENT_SCOPE)
endfunction()

function(mpsb_add_bundle target manifest output)
  cmake_parse_arguments(PARSE_ARGV 3 _mab "ALL" "MPSBC" "ARGS")
  if(_mab_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "mpsb_add_bundle(${target}): unknown arguments: ${_mab_UNPARSED_ARGUMENTS}")
  endif()

  get_filename_component(manifest "${manifest}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  get_filename_component(output "${output}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
  if(NOT EXISTS "${manifest}")
    message(FATAL_ERROR "mpsb_add_bundle(${target}): manifest not found: ${manifest}")
  endif()

  set(_mpsbc "${_mab_MPSBC}")
  if(NOT _mpsbc)
    if(TARGET mpsb::mpsbc)
      set(_mpsbc mpsb::mpsbc)
    elseif(TARGET mpsbc)
      set(_mpsbc mpsbc)
    else()
      find_program(MPSB_MPSBC_EXECUTABLE mpsbc)
      if(NOT MPSB_MPSBC_EXECUTABLE)
        message(FATAL_ERROR "mpsb_add_bundle(${target}): no mpsbc (the mpsb package was "
                            "built without tools?); pass MPSBC <path>")
      endif()
      set(_mpsbc "${MPSB_MPSBC_EXECUTABLE}")
    endif()
  endif()
  # A target name runs that target's file, and the bundle is rebuilt when the
  # compiler changes. An ALIAS (in-tree mpsb::mpsbc) is named by its real target.
  set(_mpsbc_depends "")
  if(TARGET "${_mpsbc}")
    get_target_property(_aliased "${_mpsbc}" ALIASED_TARGET)
    if(_aliased)
      set(_mpsbc "${_aliased}")
    endif()
    set(_mpsbc_depends "${_mpsbc}")
  endif()

  set(_with_probes "")
  if("--check" IN_LIST _mab_ARGS)
    set(_with_probes WITH_PROBES)
  endif()
  _mpsb_manifest_tensor_files("${manifest}" _tensors ${_with_probes})
  # Re-read the list when the manifest changes (a new layer, a renamed file).
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${manifest}")

  get_filename_component(_out_dir "${output}" DIRECTORY)
  file(RELATIVE_PATH _out_rel "${CMAKE_BINARY_DIR}" "${output}")
  add_custom_command(
    OUTPUT "${output}"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${_out_dir}"
    COMMAND ${_mpsbc} compile "${manifest}" -o "${output}" --quiet ${_mab_ARGS}
    DEPENDS "${manifest}" ${_tensors} ${_mpsbc_depends}
    COMMENT "mpsbc: ${_out_rel}"
    VERBATIM)
  if(_mab_ALL)
    add_custom_target(${target} ALL DEPENDS "${output}")
  else()
    add_custom_target(${target} DEPENDS "${output}")
  endif()
  set_target_properties(${target} PROPERTIES MPSB_BUNDLE_FILE "${output}")
endfunction()
