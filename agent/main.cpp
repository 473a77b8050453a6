#include "agent/AgentCommands.h"

int main(int argc, char** argv) {
  return tether::agent::agent_main(argc, argv);
}
