"""Every password and secret the test suite puts in a connection string or secret store.

tests/secret_guard.py fails the run if any of them appears in captured output. Tests keep their
own literals (they predate this list); tests/security/test_secret_guard.py greps tests/ for
``user:password@`` and ``PASSWORD = "..."`` literals and fails if one is missing here. Values
shorter than 6 characters or that are ordinary words of our messages ("password", "secret",
"wrong") cannot be guarded without false alarms and are listed in UNGUARDED instead.
"""

from __future__ import annotations

from esdb_emulator.security import DEFAULT_USERS

# label -> value; the label is what a leak report shows.
TEST_PASSWORDS: dict[str, str] = {
    "emulator admin (esdb_emulator DEFAULT_USERS)": DEFAULT_USERS["admin"],
    "tests/unit/test_config.py PASSWORD": "Hunter2-Sup3rSecret",
    "tests/engine/test_preflight.py SECRET": "s3cr3t-Pa55word",
    "tests/engine/test_preflight.py WRONG": "wr0ng-Pa55word",
    "tests/engine/test_verify.py password": "s3cret-pw",
    "tests/emulator/test_security.py, test_firestore_store.py": "s3cret",
    "tests/contract/test_dynamodb_store.py secret": "very-secret",
    "tests/contract/test_dynamodb_store.py access key": "AKIAEXAMPLEKEYID1234",
    "tests/security password": "Sec-Guard-9x7Q2",
}

# Too short or too common to search output for (they would match ordinary text), or placeholders
# in docs and messages.
UNGUARDED = frozenset(
    {"pw", "p", "p%40ss", "p?ss", "wrong", "wrong-", "secret", "password", "PASSWORD", "..."}
)
