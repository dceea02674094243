"""The introspection server: a thread per client answering completion, calltip,
doc and namespace requests from the user's namespace, also while the main
thread runs user code.

The answers come from introspect.py, which is loaded under a private module
name (install.load_private) so that user code may have a module of its own
called `interpreter`. One reply per request, with the request's id; a request
that fails gets an empty answer; a malformed one an error (protocol.parse_request).
"""

import threading

from .. import protocol
from ..protocol import FromKernel, ToKernel
from .debug import debug as _debug
from .install import load_private

__all__ = ["IntrospectionServer"]


class IntrospectionServer:
    """Answers the introspection requests of client links from `namespace`.

    output: the kernel's Output (its replies take no lock of it: see status.py).
    """

    def __init__(self, namespace, output):
        self.namespace = namespace
        self.output = output

    def start(self, link):
        """Serve link's requests on a daemon thread until its channel ends."""
        thread = threading.Thread(target=self._serve_introspection, args=(link,),
                                  name="kernel-introspection", daemon=True)
        thread.start()
        return thread

    def _serve_introspection(self, link):
        """Answer introspection requests, one reply per request, until the channel ends."""
        try:
            introspect = load_private("introspect")
        except Exception as error:
            _debug("introspection is unavailable: %r", error)
            introspect = None
        while True:
            try:
                text = link.requests.read_one(block=True)
                if not text:
                    return
                reply = self._answer(introspect, text)
                # No lock: a reply has no order with output (see status.py).
                link.send(FromKernel.INTROSPECT, _fitting(reply, link.max_message))
                link.flush(FromKernel.INTROSPECT)
            except Exception as error:  # never let the thread die
                _debug("introspection failed: %r", error)

    def _answer(self, introspect, text):
        """The reply (JSON text) to one INTROSPECT message; a refused one gets "error"."""
        request, error = protocol.parse_request(ToKernel.INTROSPECT, text)
        kind = request["type"]
        empty = [] if kind in (protocol.COMPLETE, protocol.NAMESPACE) else None
        if error is not None:
            _debug("refused an introspection message: %s", error)
            return protocol.encode({"id": request["id"], "result": empty, "error": error})
        result = empty
        try:
            if introspect is not None and self.namespace is not None:
                result = self._ANSWERS[kind](introspect, self.namespace, request)
            return protocol.encode({"id": request["id"], "result": result})
        except Exception as error:
            _debug("introspection request %r failed: %r", kind, error)
            return protocol.encode({"id": request["id"], "result": empty})

    _ANSWERS = {
        protocol.COMPLETE: lambda introspect, ns, request: list(
            introspect.complete(ns, request["code"], request["cursor"])),
        protocol.SIGNATURE: lambda introspect, ns, request: introspect.signature(
            ns, request["expr"]),
        protocol.DOC: lambda introspect, ns, request: introspect.doc(ns, request["expr"]),
        protocol.NAMESPACE: lambda introspect, ns, request: [
            list(row) for row in introspect.namespace_listing(ns)],
    }


def _fitting(reply, max_bytes):
    """The reply, or one with a null result when it is larger than the client accepts."""
    if len(reply) * 4 <= max_bytes or len(reply.encode("utf-8")) <= max_bytes:
        return reply
    return protocol.encode({"id": protocol.decode(reply).get("id"), "result": None})
