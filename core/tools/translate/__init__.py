"""Translate a source checkpoint into the target's, for moving catch-up subscriptions.

A subscription's checkpoint P means "processed everything up to and including P". On the
target it must resume after the last replicated event at or before P: every target event
after that one was copied from a source event after P (the relay writes in `$all` order), and
every event before it from a source event at or before P. So:

- a source `$all` commit position P becomes the target commit position of the last target
  record whose source position (`$originalPosition`) is <= P; None (the start of `$all`) when
  no such record exists;
- a source stream revision R becomes the target revision of the stream's last event whose
  source revision (`$originalStreamRevision`) is <= R; None (the start of the stream) when
  none.

Catch-up subscriptions (esdbclient `subscribe_to_all(commit_position=...)`,
`subscribe_to_stream(stream_position=...)`) are exclusive of the position they are given, so
the translated value is passed as it is. Without `$original*` metadata (`original_metadata =
false`), the last replicated source event at or before P is found in the source and its id
looked up in the target (ids are kept).

`$original*` keys are only claims: a user's metadata may hold them too (data migrated before,
by esdb-relay or another tool). Every claim a translation rests on, the anchor's and the next
marked record's, is confirmed in the source (the record there has the same id,
core/engine/locate.py); if one is not, the translation is made by event ids instead.

Every search reads pages (bounded memory). For `$all` it scans from whichever end of the
target is nearer, judged by where P lies in the source's log. Records that carry no source
position (tombstones, target-only system records) are never chosen: such a record just after
the chosen one can be delivered again; subscriptions normally ignore system events.

Rooms: common.py (the relay's position, claims confirmed in the source), positions.py
(`$all` positions), streams.py (stream revisions), batch.py (a file of checkpoints).
"""

from core.tools.translate.batch import translate_file
from core.tools.translate.common import NOT_LOADED, START, TranslatedPosition, relay_position
from core.tools.translate.positions import translate_position
from core.tools.translate.streams import translate_stream

__all__ = [
    "NOT_LOADED",
    "START",
    "TranslatedPosition",
    "relay_position",
    "translate_file",
    "translate_position",
    "translate_stream",
]
