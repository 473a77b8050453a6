// tether-vnc: see vnc/VncApp.h.
#include "vnc/VncApp.h"

int main(int argc, char** argv) {
  return tether::vnc::tether_vnc_main(argc, argv);
}
