// mpsb-dump: the command-line face of mpsb::dump (see dump.h).
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "dump.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);
  return mpsb::dump::run_command_line(args, std::cout, std::cerr, ::isatty(STDOUT_FILENO) == 1);
}
