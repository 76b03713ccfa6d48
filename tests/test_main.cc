// test_main.cc: the main of the gtest suites. It first makes the same OpenBLAS kernel choice as
// ndl-train (core/blas_select: may re-execute the binary with OPENBLAS_CORETYPE set), so the suite
// checks the kernel users run on, then runs the tests.
#include <gtest/gtest.h>

#include "core/blas_select.h"

int main(int argc, char **argv) {
  ndl_blas_select(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
