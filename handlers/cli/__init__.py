"""The `esdb-relay` command.

gRPC's C core logs handshake failures and its absl start-up line straight to stderr
("WARNING: All log messages before absl::InitializeLog() ...", "Handshake failed ...");
the command says what went wrong in its own words (core.tools.preflight.diagnose), so that
chatter is silenced here, before grpc is first imported. GRPC_VERBOSITY set by the user wins.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
