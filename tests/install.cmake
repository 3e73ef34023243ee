# Installs the build into a temporary prefix, then with DESTDIR under another prefix, and checks
# that every file and link lands under it and that the links reach the installed binary.
# Run by ctest: cmake -DBUILD_DIR=<build> -DWORK_DIR=<scratch parent> -P install.cmake
if(NOT BUILD_DIR OR NOT WORK_DIR)
  message(FATAL_ERROR "usage: cmake -DBUILD_DIR=DIR -DWORK_DIR=DIR -P install.cmake")
endif()
string(RANDOM LENGTH 12 _tag)
set(tmp "${WORK_DIR}/install-test-${_tag}")
file(REMOVE_RECURSE "${tmp}")

function(fail)
  file(REMOVE_RECURSE "${tmp}")
  message(FATAL_ERROR ${ARGN})
endfunction()

# Checks the tree at ROOT (where PREFIX landed): files, relative links, links resolving to the
# installed binary, and the links running as the commands they name.
function(check_tree root)
  foreach(f bin/layerfs share/man/man1/layerfs.1)
    if(NOT EXISTS "${root}/${f}" OR IS_SYMLINK "${root}/${f}")
      fail("${root}/${f}: not installed as a file")
    endif()
  endforeach()
  get_filename_component(bin "${root}/bin/layerfs" REALPATH)
  foreach(pair "bin/layerfs-overlay=layerfs" "sbin/mount.fuse.layerfs=../bin/layerfs")
    string(REPLACE "=" ";" pair "${pair}")
    list(GET pair 0 link)
    list(GET pair 1 want)
    if(NOT IS_SYMLINK "${root}/${link}")
      fail("${root}/${link}: not installed as a link")
    endif()
    file(READ_SYMLINK "${root}/${link}" target)
    if(NOT target STREQUAL want)
      fail("${root}/${link} -> '${target}', not '${want}'")
    endif()
    get_filename_component(real "${root}/${link}" REALPATH)
    if(NOT real STREQUAL bin)
      fail("${root}/${link} resolves to '${real}', not '${bin}'")
    endif()
  endforeach()
  execute_process(COMMAND "${root}/bin/layerfs-overlay" --version
    OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "^layerfs overlay ")
    fail("${root}/bin/layerfs-overlay --version: exit ${rc}: ${out}")
  endif()
  execute_process(COMMAND "${root}/sbin/mount.fuse.layerfs" --help
    OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "mount.fuse.layerfs SOURCE MOUNTPOINT")
    fail("${root}/sbin/mount.fuse.layerfs --help: exit ${rc}: ${out}")
  endif()
endfunction()

execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${tmp}/prefix"
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  fail("cmake --install --prefix ${tmp}/prefix: exit ${rc}")
endif()
check_tree("${tmp}/prefix")

execute_process(COMMAND "${CMAKE_COMMAND}" -E env "DESTDIR=${tmp}/dest"
  "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix /opt/layerfs
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  fail("DESTDIR=${tmp}/dest cmake --install --prefix /opt/layerfs: exit ${rc}")
endif()
check_tree("${tmp}/dest/opt/layerfs")
# nothing outside DESTDIR/PREFIX
file(GLOB_RECURSE all LIST_DIRECTORIES false RELATIVE "${tmp}/dest" "${tmp}/dest/*")
list(SORT all)
set(want opt/layerfs/bin/layerfs opt/layerfs/bin/layerfs-overlay
  opt/layerfs/sbin/mount.fuse.layerfs opt/layerfs/share/man/man1/layerfs.1)
if(NOT all STREQUAL want)
  fail("DESTDIR holds '${all}', not '${want}'")
endif()
file(REMOVE_RECURSE "${tmp}")
