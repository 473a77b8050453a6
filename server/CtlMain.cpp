// tetherctl: the admin command line for tether-server's REST API (see server/CtlApp.h).
#include "server/CtlApp.h"

int main(int argc, char** argv) {
  return tether::server::run_ctl(argc, argv);
}
