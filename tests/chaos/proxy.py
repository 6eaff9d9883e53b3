"""proxy.py -- a TCP fault proxy for the links between cluster members.

Every directed link (i -> j) gets its own listening port on 127.0.0.1; member i is told
(--member) to dial member j there, and the proxy relays to j's real address. Conclave's
peer transport sends i's Raft messages only on the connection i dialed (j never writes
on it), so cutting link (i -> j) silences i -> j and leaves j -> i alone: one-way
partitions are real. The harness registers two links per direction, "peer" (Raft) and
"http" (a follower forwarding a client write to the leader), and sets both together.

Modes, per link:
  pass       relay bytes both ways;
  drop       close the link's connections, and accept-then-close new ones (the dialer
             sees its connection refused/reset at once);
  blackhole  keep everything open but move no bytes; new connections are accepted and
             held without dialing the target. Bytes already buffered are delivered when
             the link passes again (like TCP retransmitting after a healed partition).

Bounds: one selector thread; per connection and direction at most BUFFER_BYTES buffered
(reading stops when it is full, so the sender's kernel buffers and then the sender fill
up); at most CONNS_PER_LINK_MAX connections per link (more are refused); each loop turn
waits at most TICK_S. stop() ends the thread and closes every socket it opened.

Ownership: the Proxy owns every socket; callers only name links and set modes. Mode
changes are queued under a lock and applied by the proxy thread on its next turn;
set_modes() returns after they are applied (bounded wait), so a nemesis that cuts a link
knows no byte passes after the call.

Sections: link and pair | the loop | control API.
"""

import errno
import selectors
import socket
import struct
import threading
import time

PASS, DROP, BLACKHOLE = "pass", "drop", "blackhole"
MODES = (PASS, DROP, BLACKHOLE)
BUFFER_BYTES = 256 << 10       # per connection and direction
CONNS_PER_LINK_MAX = 256       # forwarded HTTP opens one connection per request
TICK_S = 0.05
APPLY_WAIT_S = 5.0             # set_modes() waits at most this for the proxy thread
RECV_BYTES = 64 << 10


# ---- link and pair ------------------------------------------------------------------


class _Link:
    def __init__(self, name, listener, target):
        self.name = name
        self.listener = listener
        self.port = listener.getsockname()[1]
        self.target = target            # (host, port)
        self.mode = PASS
        self.pairs = set()
        self.bytes = 0                  # relayed, both directions
        self.accepted = 0
        self.refused = 0


class _Pair:
    """One accepted connection (down: from the dialing member) and its upstream socket
    (up: to the target). to_up / to_down hold bytes read but not yet written."""

    def __init__(self, link, down):
        self.link = link
        self.down = down
        self.up = None
        self.connecting = False
        self.connected = False
        self.to_up = bytearray()
        self.to_down = bytearray()
        self.down_eof = False
        self.up_eof = False
        self.up_shut = False
        self.down_shut = False
        self.closed = False
        self.events = {}                # socket -> registered event mask


# ---- the loop ---------------------------------------------------------------------------


class Proxy:
    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.links = {}
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.pending = []               # (link name, mode) to apply
        self.applied_gen = 0
        self.wanted_gen = 0
        self.applied = threading.Condition(self.lock)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.thread = None
        self.stopping = False
        self.error = None               # an exception that ended the loop

    def add_link(self, name, target_host_port):
        """Opens the listening port for link `name` relaying to "host:port"; returns the
        "host:port" to dial. Only before start()."""
        assert self.thread is None, "add links before start()"
        assert name not in self.links, name
        host, _, port = target_host_port.rpartition(":")
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, 0))
        ls.listen(64)
        ls.setblocking(False)
        link = _Link(name, ls, (host, int(port)))
        self.links[name] = link
        self.sel.register(ls, selectors.EVENT_READ, ("listen", link))
        return f"{self.host}:{link.port}"

    def start(self):
        self.thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self.thread.start()
        return self

    def _run(self):
        try:
            while not self.stopping:
                self._apply_pending()
                for key, mask in self.sel.select(TICK_S):
                    kind, obj = key.data
                    if kind == "wake":
                        try:
                            while self.wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif kind == "listen":
                        self._accept(obj)
                    elif not obj.closed:
                        self._io(obj, key.fileobj, mask)
        except Exception as e:  # noqa: BLE001 -- recorded and re-raised by stop()
            self.error = e
        finally:
            for link in self.links.values():
                for p in list(link.pairs):
                    self._close_pair(p)
                try:
                    self.sel.unregister(link.listener)
                except (KeyError, ValueError):
                    pass
                link.listener.close()
            self.sel.close()
            with self.lock:
                self.applied_gen = self.wanted_gen
                self.applied.notify_all()

    def _apply_pending(self):
        with self.lock:
            todo, self.pending = self.pending, []
            gen = self.wanted_gen
        for name, mode in todo:
            link = self.links[name]
            link.mode = mode
            for p in list(link.pairs):
                if mode == DROP:
                    self._close_pair(p)
                else:
                    if mode == PASS and p.up is None:
                        self._dial(p)
                    self._update(p)
        with self.lock:
            self.applied_gen = max(self.applied_gen, gen)
            self.applied.notify_all()

    def _accept(self, link):
        for _ in range(64):             # bounded work per turn
            try:
                s, _ = link.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if link.mode == DROP or len(link.pairs) >= CONNS_PER_LINK_MAX:
                link.refused += 1
                _abort(s)
                continue
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link.accepted += 1
            p = _Pair(link, s)
            link.pairs.add(p)
            if link.mode == PASS:
                self._dial(p)
            self._update(p)

    def _dial(self, p):
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        p.up = up
        rc = up.connect_ex(p.link.target)
        if rc in (0,):
            p.connected = True
        elif rc in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            p.connecting = True
        else:
            self._close_pair(p)

    def _want(self, p, s):
        """The events socket s of pair p should wait for now."""
        if p.link.mode != PASS:
            return 0
        ev = 0
        if s is p.down:
            if not p.down_eof and len(p.to_up) < BUFFER_BYTES:
                ev |= selectors.EVENT_READ
            if p.to_down:
                ev |= selectors.EVENT_WRITE
        else:
            if p.connecting:
                return selectors.EVENT_WRITE
            if not p.up_eof and len(p.to_down) < BUFFER_BYTES:
                ev |= selectors.EVENT_READ
            if p.to_up:
                ev |= selectors.EVENT_WRITE
        return ev

    def _update(self, p):
        if p.closed:
            return
        for s in (p.down, p.up):
            if s is None:
                continue
            want = self._want(p, s)
            have = p.events.get(s, 0)
            if want == have:
                continue
            if have == 0:
                self.sel.register(s, want, ("pair", p))
            elif want == 0:
                self.sel.unregister(s)
            else:
                self.sel.modify(s, want, ("pair", p))
            p.events[s] = want

    def _io(self, p, s, mask):
        try:
            if s is p.up and p.connecting:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._close_pair(p)
                    return
                p.connecting = False
                p.connected = True
            elif mask & selectors.EVENT_READ:
                src_is_down = s is p.down
                buf = p.to_up if src_is_down else p.to_down
                data = s.recv(min(RECV_BYTES, BUFFER_BYTES - len(buf)))
                if data:
                    buf += data
                    p.link.bytes += len(data)
                elif src_is_down:
                    p.down_eof = True
                else:
                    p.up_eof = True
            if mask & selectors.EVENT_WRITE and p.connected:
                if s is p.up and p.to_up:
                    del p.to_up[:s.send(p.to_up)]
                elif s is p.down and p.to_down:
                    del p.to_down[:s.send(p.to_down)]
            # pass half-closes through once the buffered bytes are out
            if p.down_eof and not p.to_up and p.connected and not p.up_shut:
                p.up_shut = True
                p.up.shutdown(socket.SHUT_WR)
            if p.up_eof and not p.to_down and not p.down_shut:
                p.down_shut = True
                p.down.shutdown(socket.SHUT_WR)
            if p.up_shut and p.down_shut:
                self._close_pair(p)
                return
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close_pair(p)
            return
        self._update(p)

    def _close_pair(self, p):
        if p.closed:
            return
        p.closed = True
        for s in (p.down, p.up):
            if s is None:
                continue
            if p.events.get(s):
                try:
                    self.sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            _abort(s)
        p.link.pairs.discard(p)

    # ---- control API ------------------------------------------------------------------

    def set_modes(self, modes):
        """modes: {link name: PASS|DROP|BLACKHOLE}. Returns once the proxy thread applied
        them (or APPLY_WAIT_S passed: AssertionError)."""
        for name, mode in modes.items():
            assert name in self.links, name
            assert mode in MODES, mode
        with self.lock:
            self.pending.extend(modes.items())
            self.wanted_gen += 1
            gen = self.wanted_gen
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass
        deadline = time.monotonic() + APPLY_WAIT_S
        with self.lock:
            while self.applied_gen < gen:
                left = deadline - time.monotonic()
                assert left > 0 and self.thread is not None and self.thread.is_alive(), \
                    f"proxy did not apply modes within {APPLY_WAIT_S}s ({self.error!r})"
                self.applied.wait(left)

    def heal(self):
        self.set_modes({name: PASS for name in self.links})

    def modes(self):
        return {name: link.mode for name, link in self.links.items()}

    def stats(self):
        return {name: {"mode": l.mode, "bytes": l.bytes, "accepted": l.accepted,
                       "refused": l.refused, "open": len(l.pairs)}
                for name, l in self.links.items()}

    def stop(self, timeout=5.0):
        """Ends the thread and closes every socket; re-raises an error the loop hit."""
        self.stopping = True
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass
        if self.thread is not None:
            self.thread.join(timeout)
            assert not self.thread.is_alive(), "proxy thread did not stop"
        self.wake_r.close()
        self.wake_w.close()
        if self.error is not None:
            raise self.error


def _abort(s):
    """Close with RST (SO_LINGER 0): the peer learns at once, nothing lingers."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
