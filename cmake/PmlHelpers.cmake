get_filename_component(PML_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
# Shared build helpers. Project code gets warnings (and -Werror with PML_WERROR); generated
# protobuf code is exempt.

function(pml_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-missing-field-initializers)
  if(PML_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# pml_library(NAME SRCS ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
function(pml_library name)
  cmake_parse_arguments(A "" "" "SRCS;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SRCS})
  target_include_directories(${name} PUBLIC ${PML_ROOT})
  target_link_libraries(${name} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_PRIVATE_DEPS})
  pml_warnings(${name})
endfunction()

# pml_test(NAME SRCS ... DEPS ... [LABELS ...]): a GoogleTest binary registered with CTest.
# Tests get PML_SHARED_DIR (the shared/ folder with the vectors) in their environment.
function(pml_test name)
  cmake_parse_arguments(A "" "TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${A_SRCS})
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gmock GTest::gtest GTest::gmock_main)
  target_include_directories(${name} PRIVATE ${PML_ROOT})
  pml_warnings(${name})
  # Test discovery runs the binary at build time, without the ctest environment: compile the
  # shared/ path in as the fallback so vector-driven suites are discovered too.
  target_compile_definitions(${name} PRIVATE PML_DEFAULT_SHARED_DIR="${PML_SHARED_DIR}")
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name} TEST_PREFIX "${name}."
    PROPERTIES ENVIRONMENT "PML_SHARED_DIR=${PML_SHARED_DIR}" LABELS "unit;${A_LABELS}"
               TIMEOUT ${A_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()

# pml_fuzzer(NAME SRCS ... DEPS ...): a libFuzzer target (only with PML_FUZZ).
function(pml_fuzzer name)
  cmake_parse_arguments(A "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${A_SRCS})
  target_link_libraries(${name} PRIVATE ${A_DEPS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_include_directories(${name} PRIVATE ${PML_ROOT})
endfunction()
