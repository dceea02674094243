"""An embeddable remote Python interpreter.

Two processes. The kernel, which runs the user's code, is the subpackage
interpreter.kernel (`python -m interpreter.kernel`); everything else here
runs in the editor's process:

- client.py: `Kernel`, the client an editor embeds (with RunResult, KernelError),
  also of shared kernels (Kernel.spawn(shared=True), Kernel.connect);
- launch.py: the command and environment that start a kernel (pure);
- status.py: the kernel's status as the client sees it (StatusTracker, pure);
- process.py: the kernel's OS process: its pipes, its exit, its end;
- output.py: the kernel's output in its order (k.output, k.stdout, k.stderr);
- readers.py: reading the kernel's channels without a thread per kernel;
- console.py: the terminal console, `python -m interpreter`;
- cells.py: splitting a file into `##` / `# %%` cells;
- connfile.py: the connection files of shared kernels; hub/: the hub process that
  owns a shared kernel (it runs on the kernel's Python, like the kernel).

protocol.py is the wire vocabulary both processes share. The kernel process
imports this package too, so nothing is imported here eagerly: `Kernel` is
loaded on first use.
"""

__all__ = ["Kernel", "RunResult", "KernelError"]


def __getattr__(name):
    if name in __all__:
        from . import client
        return getattr(client, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
