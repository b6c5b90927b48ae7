"""Reading a file of a dataset: a read-only binary file object over the workers.

    config.py    `ReaderConfig` and the constants behind it, with why each is so
    file.py      `ReservoirFile`: the file interface (read, readinto, readline, seek)
    streams.py   streams and read-ahead: which pieces a read opens, and its spans
    prefetch.py  the prefetch thread, driving a piece one chunk, pausing for forks
    fetch.py     failover: one piece from the workers; the fork hooks
    pieces.py    `_Piece`, the bytes a file holds and the calls that bring them

Prefetch design
---------------
At open, `ReservoirFile` asks the master once where each block of the file lives
(GetBlockLocations); from then on it reads from the workers directly. It holds parts
of the file as *pieces*: byte ranges never crossing a block, each brought by one
ReadBlock call (or several when a worker fails) and kept as the *chunks* (messages,
1 MiB from a worker) received so far. Three parts:

- Streams. A sequential read (one that starts where the previous one ended, or in
  bytes a stream holds; the first read at offset 0 counts) reads one call per block,
  from the position to the block's end. The reader receives the chunks itself, in
  its own thread, as it needs them, and copies each one once, into the caller's
  buffer, while it is still in the CPU cache; a stream lets go of each chunk the
  reader has passed.
- Read-ahead. The *read-ahead limit* is the position plus `ahead` segments of
  `segment_size`; `ahead` starts at 1 and doubles with each segment read, up to
  `window`. Blocks that start below the limit get their calls opened while fewer
  than `threads` calls are open (the call the reader needs always opens), and the
  others have their workers asked to cache them (CacheBlock, answered but not waited
  for): a cold block's fill starts at once, while the reader is still on the block
  before, without its bytes moving yet. With the defaults (8 x 8 MiB = one 64 MiB
  block, one call) the next block's worker is asked as the reader enters a block,
  and its call opens as the reader reaches it. A reader that wants only a header
  opens one call and receives about one segment.
- Prefetching between reads. When the caller has not read again for a moment
  (`PREFETCH_DELAY_SECONDS`), one thread per file (started when needed, ended when
  idle) receives the open calls' chunks, nearest first, up to the read-ahead limit,
  so that the transfer goes on while the caller works on what it read. During a
  read it stands back, and gRPC's flow control holds the workers back at the limit.

Why so (bench/README.md; 2 cores, warm 256 MiB reads): a reader that waited for
whole 8 MiB pieces fetched by pool threads spent most of its time waiting, and an
8 MiB call moves about 0.65 GB/s where one call per 64 MiB block moves about 1.05.
Chunks handed from fetch threads to the reader as they arrive still cost a thread
switch per chunk: 0.75-0.83 GB/s, where receiving in the reader's own thread reached
1.07. A second stream received at the same time cost about 5% more, and a prefetch
thread that ran between back-to-back reads more faults and switches, hence the two
rules above.

Random reads (any other) first cancel the streams' calls and fetch only the bytes
asked for (at least `random_min`, about what one round trip costs), without
read-ahead. A random piece up to `segment_size` is *kept*, in LRU order, for nearby
reads (the prefetch thread receives the rest of it); a larger one is read like a
stream. A read that goes on from where one ended streams again.

Bounds per open file: at most `window + 2` pieces (the least recently used is
dropped, and its call cancelled), and `threads` calls open for read-ahead besides
the one the reader needs. Kept pieces hold at most `segment_size` each; streams hold
what lies between the position and the read-ahead limit (`window x segment_size`)
plus a chunk each, and gRPC buffers at most a call's HTTP/2 window for each call
open. So memory stays below (2 x window + 2) x segment_size plus a few chunks and
windows, whatever the file's size; a piece the sequential reader has passed is
dropped at once. A config such as segment_size=256 KiB, window=1, threads=1 reads in
small steps: one call open, 256 KiB ahead.

Failures (`_receive`, in fetch.py, is the one function to read for them): a piece goes to the
block's first holder, else its first filler. When a worker fails (unreachable,
deadline, stream broken or ended early, NOT_FOUND...), the bytes of the piece not yet
received are asked of the next candidate: holders, then fillers, skipping those that
failed; a stream that broke after k bytes goes on from its offset + k. Once all have
failed, the master is asked again for the locations and each candidate gets one more
try; then Unavailable names the workers tried. FAILED_PRECONDITION (the origin object
changed since the last sync) is raised at once. A call that reaches its deadline
after sending bytes, or while nobody was waiting for it (a call opened ahead, or a
reader that paused), goes on at the same worker. A worker that failed is tried last
by this file for a while, so a dead worker costs one failed call per piece in flight,
not one per piece read.

Forks (data loaders fork their workers): gRPC does not survive a fork with calls
open, so before a fork each file lets a chunk being received arrive and cancels its
calls; the parent's fetches call again from the byte reached, and a child starts
afresh with its own channels.

gRPC errors stop here: callers see `reservoir.errors` only.
"""

from reservoir.client.reader.config import ReaderConfig
from reservoir.client.reader.file import ReservoirFile

__all__ = ["ReaderConfig", "ReservoirFile"]
