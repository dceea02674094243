"""The hub's side of its kernel: the process, its pipes, and the connection to it.

The kernel is started exactly as a client starts an unshared one (launch.py):
it connects back to a private 127.0.0.1 listener with a fresh key. Threads,
all owned by KernelSide and ended with the kernel:
- the reader: waits on the kernel's channels with wait_any() and hands each
  message to the hub (statuses after reading what the pipes hold);
- the pipe reader: a selector on the kernel's fd 1/2 pipes (and a wake pipe),
  decoding UTF-8 incrementally; it stops at EOF, or once the process has
  exited and the pipes are empty (a child may hold them open);
- the waiter: os.waitpid on the process (Popen.wait), blocking.
"""

import os
import selectors
import signal
import subprocess
import threading

from channels import Channels, ChannelsError, interrupts

from ..launch import PACKAGE_ROOT, kernel_command, kernel_environment
from ..process import ProcessPipes
from ..protocol import FromKernel

__all__ = ["KernelSide"]

READ_CHANNELS = (FromKernel.ORDER, FromKernel.STDOUT, FromKernel.STDERR, FromKernel.STATUS,
                 FromKernel.INTROSPECT)
OUTPUT_CHANNELS = (FromKernel.STDOUT, FromKernel.STDERR)
# A receiving channel the hub injects into to wake the reader (the kernel never
# sends on it).
WAKE_CHANNEL = 127


class KernelSide:
    def __init__(self, hub, options, environ):
        self.hub = hub
        key = os.urandom(32)
        self.channels = Channels(key=key)
        port = self.channels.host(0, "127.0.0.1")
        args = kernel_command(options.python, port, options.cwd, options.path0, options.gui,
                              options.startup, options.argv)
        env = kernel_environment(environ, None, key)
        self.proc = subprocess.Popen(args, cwd=PACKAGE_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.exit_code = None
        self.exited = threading.Event()
        self.reader_done = threading.Event()
        self.pipes_done = threading.Event()
        # (A pipe at EOF is closed by join(), after the selector let go of it.)
        self.pipes = ProcessPipes(self.proc, (FromKernel.PROCESS_STDOUT,
                                              FromKernel.PROCESS_STDERR), hub.from_process)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.output_paused = False
        self.send = {}
        self.channels.add_state_callback(self._state_changed)
        self.threads = [threading.Thread(target=self._read_loop, daemon=True, name="hub-kernel"),
                        threading.Thread(target=self._pipe_loop, daemon=True, name="hub-pipes"),
                        threading.Thread(target=self._wait, daemon=True, name="hub-waiter")]
        for thread in self.threads:
            thread.start()

    # -- sending to the kernel (hub lock held) ---------------------------------------

    def write(self, channel, message):
        sender = self.send.get(channel)
        if sender is None:
            sender = self.send[channel] = self.channels.get_sending_channel(channel)
        try:
            sender.write(message)
        except (ChannelsError, ValueError, OSError):
            pass

    def end_stdin(self):
        try:
            self.channels.get_sending_channel(0).close()
        except (ChannelsError, ValueError, OSError):
            pass

    def interrupt(self):
        try:
            self.channels.interrupt()
        except (ChannelsError, ValueError, OSError):
            pass

    def pause_output(self, paused):
        """Stop (or resume) reading the kernel's output: its flow control holds it."""
        if paused == self.output_paused:
            return
        self.output_paused = paused
        self._wake()

    def _wake(self):
        try:
            self.channels.get_receiving_channel(WAKE_CHANNEL).inject("wake")
        except (ChannelsError, ValueError, OSError):
            pass
        try:
            os.write(self.wake_w, b"\0")
        except OSError:
            pass

    # -- the connection -------------------------------------------------------------------

    def _state_changed(self, state):
        if state in ("connected", "unresponsive"):
            self.hub.kernel_state(state)

    def _read_loop(self):
        interrupts.block_in_this_thread()
        channels = self.channels
        receivers = [channels.get_receiving_channel(index) for index in READ_CHANNELS]
        wake = channels.get_receiving_channel(WAKE_CHANNEL)
        try:
            while True:
                waited = [r for r in receivers
                          if not (self.output_paused and r.index in OUTPUT_CHANNELS)]
                ready = channels.wait_any(waited + [wake], self.hub.settle_timeout())
                if not ready:
                    self.hub.settle()
                    continue
                ready.sort(key=lambda r: READ_CHANNELS.index(r.index) if r is not wake else -1)
                for receiver in ready:
                    if receiver is wake:
                        wake.read(False)
                        continue
                    if receiver.index == FromKernel.STATUS:
                        self.read_pipes()
                    while True:
                        message = receiver.read_one(False)
                        if not message:
                            break
                        self.hub.from_kernel(receiver.index, message)
                        if receiver.index == FromKernel.ORDER or self.output_paused:
                            break   # its messages next (and ORDER ahead of them)
                if channels.state == "closed" and not any(r.pending for r in receivers):
                    return
        except Exception:
            self.hub.debug_exception("kernel reader")
        finally:
            self.reader_done.set()
            self.hub.kernel_gone()

    # -- the pipes ---------------------------------------------------------------------

    def read_pipes(self):
        """Relay what the pipes hold now (non-blocking)."""
        if not self.output_paused:
            self.pipes.read_all()

    def _pipe_loop(self):
        interrupts.block_in_this_thread()
        selector = selectors.DefaultSelector()
        selector.register(self.wake_r, selectors.EVENT_READ)
        registered = set()
        try:
            while self.pipes.fds():
                wanted = set() if self.output_paused else set(self.pipes.fds())
                for fd in registered - wanted:
                    selector.unregister(fd)
                for fd in wanted - registered:
                    selector.register(fd, selectors.EVENT_READ)
                registered = wanted
                if self.exited.is_set():
                    self.read_pipes()   # what is left; a child may hold the pipes open
                    if not self.output_paused:
                        break
                for key, _ in selector.select():
                    if key.fd == self.wake_r:
                        try:
                            while os.read(self.wake_r, 4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                    else:
                        self.pipes.read(key.fd)
        except Exception:
            self.hub.debug_exception("pipe reader")
        finally:
            selector.close()
            self.pipes_done.set()

    # -- the process ----------------------------------------------------------------------

    def _wait(self):
        interrupts.block_in_this_thread()
        self.exit_code = self.proc.wait()
        self.exited.set()
        self._wake()
        self.hub.kernel_exited()

    def signal_group(self, sig):
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def end(self, first_wait=2.0):
        """End the kernel: close the connection (it exits within 0.5 s), then
        SIGTERM, then SIGKILL of its process group, 2 s apart."""
        self.channels.close(0.5)
        if not self.exited.wait(first_wait):
            self.signal_group(signal.SIGTERM)
            if not self.exited.wait(2.0):
                self.signal_group(signal.SIGKILL)
                self.exited.wait(2.0)
        self.signal_group(signal.SIGKILL)   # children it left in its group

    def join(self, timeout):
        for thread in self.threads:
            thread.join(timeout)
        if not self.pipes_done.is_set():
            return   # leave the pipes to the thread still reading them
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
