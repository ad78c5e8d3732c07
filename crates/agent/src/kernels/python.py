"""The kernel behind Airlock's Python code contexts: a tiny, dependency-free Jupyter kernel.

The agent starts it as `python3 -c <this source>` in the context's working directory,
with stdin on /dev/null and stdout and stderr streamed to the user. Two inherited pipes,
named by environment variables, carry the protocol:

- AIRLOCK_REQUEST_FD, read: one JSON request a line,
  {"code": ..., "mode": "cell" | "handler", "execution_count": N, "event": ...}.
  End of file ends the kernel.
- AIRLOCK_CONTROL_FD, written: one JSON message a line, {"type": "ready", "pid": N} once, then per
  request any "result" messages, at most one "error", and always a final "end".

"cell" runs the code in one persistent namespace, notebook style, and shows the value of
its last expression; "handler" runs it in a fresh namespace and calls `handler(event)`;
"script" runs it once as `python3 -c` would (a one-shot run in a pre-started kernel, which
the agent retires afterwards) and ends with {"type": "end", "exit_code": N}.
A SIGINT to the process group interrupts the running request and is ignored between them.
"""

import _signal
import ast
import builtins
import importlib.machinery
import io
import json
import linecache
import os
import signal
import sys
import types

COMPILE_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without the cost of importing inspect
KERNEL_GLOBALS = globals()  # tells the kernel's frames from the user's in tracebacks
MPL_BACKEND_MODULE = "airlock_mpl_backend"
PLAIN_TYPES = frozenset(
    (int, float, complex, bool, str, bytes, bytearray, list, tuple, dict, set, frozenset, range, type(None))
)
REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)


class HandlerNotFound(Exception):
    """The code of a handler-mode request defines no callable `handler`."""


class Interrupts:
    """Turns SIGINT into KeyboardInterrupt while a request runs; ignores it otherwise.

    The kernel only sets flags here; the Python-level handler reads them, so a SIGINT
    that lands between requests never raises in the kernel's own code.
    """

    def __init__(self):
        self.armed = False  # a request runs: SIGINT raises KeyboardInterrupt
        self.held = False  # the run writes a control message, which must not be torn
        self.missed = False  # a SIGINT came while held: raised once the message is out
        self.install()

    def install(self):
        # The C module's, which unlike signal.signal() does not try (and fail, raising and
        # catching within) to turn the old handler into an enum.
        _signal.signal(signal.SIGINT, self.on_sigint)

    def on_sigint(self, signum, frame):
        if not self.armed:
            return
        if self.held:
            self.missed = True
        else:
            raise KeyboardInterrupt

    def arm(self):
        self.missed = False
        self.armed = True


class Control:
    """Writes control messages, one compact JSON object a line.

    A message can be held back to go out in the same write as the next one: the run's own
    result goes out with its `end`, so that the agent wakes once for the two.
    """

    def __init__(self, fd, interrupts):
        self.fd = fd
        self.interrupts = interrupts
        self.held_back = b""
        self.pid = os.getpid()

    def hold_back(self, message):
        self.held_back += encode_message(message)

    def send(self, message):
        if os.getpid() != self.pid:
            os._exit(0)  # a child forked by the user's code got back here: not its to answer
        flush_output()
        view = memoryview(self.held_back + encode_message(message))
        self.held_back = b""
        self.interrupts.held = True
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        finally:
            self.interrupts.held = False
        if self.interrupts.missed and self.interrupts.armed:
            self.interrupts.missed = False
            raise KeyboardInterrupt


def encode_message(message):
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


class Kernel:
    """Serves the requests: runs their code and sends what comes of it."""

    def __init__(self, control, interrupts):
        self.control = control
        self.interrupts = interrupts
        self.main = types.ModuleType("__main__")  # the cells' namespace is its __dict__
        self.main.__builtins__ = builtins
        self.main.display = self.display  # as IPython offers it
        self.loop = None  # the asyncio event loop for top-level await, made when needed

    def serve(self, line):
        """Runs one request line; whatever happens, ends it with an `end` message."""
        error = None
        try:
            request = json.loads(line)
            if request.get("mode") == "script":
                self.control.send({"type": "end", "exit_code": self.run_script(request)})
                return
            self.interrupts.arm()
            try:
                self.run(request)
            finally:
                self.interrupts.armed = False
        except BaseException as exc:  # user errors, SystemExit and KeyboardInterrupt alike
            # Again: a KeyboardInterrupt at the very edge of the run may have skipped the store.
            self.interrupts.armed = False
            error = exc
        # The user's code may have set a SIGINT handler of its own.
        if _signal.getsignal(signal.SIGINT) != self.interrupts.on_sigint:
            self.interrupts.install()
        if error is not None:
            self.report(error)
        self.control.send({"type": "end"})

    def run_script(self, request):
        """Runs the code as `python3 -c CODE` (or `python3 FILE`) would, with the request's
        standard input and environment; returns the exit status. Its traceback goes to stderr.
        The kernel is not used again, so the script may change anything in it."""
        os.environ.update(request.get("env") or {})
        if request.get("stdin") is not None:
            replace_stdin(request["stdin"].encode())
        filename = request.get("filename")
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        if filename:
            main.__file__ = filename
        sys.modules["__main__"] = main
        sys.argv = [filename or "-c"]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        status = 0
        try:
            exec(compile(request["code"], filename or "<string>", "exec", dont_inherit=True), main.__dict__)
        except SystemExit as exc:
            status = exit_status(exc)
        except BaseException as exc:
            sys.stderr.write("".join(format_exception(exc)))
            status = 1
        import atexit

        atexit._run_exitfuncs()  # as the interpreter does at its exit
        return status

    def run(self, request):
        """Runs the request's code; anything it raises is the run's error."""
        try:
            if request.get("mode") == "handler":
                self.run_handler(request["code"], request.get("event"))
            else:
                self.run_cell(request["code"], request["execution_count"])
        finally:
            self.flush_figures()  # even after an error, as Jupyter does

    def run_cell(self, code, execution_count):
        namespace = self.main.__dict__
        value = self.execute(code, "<cell %d>" % execution_count, namespace, show_last=True)
        if value is not None:
            namespace["_"] = value
            self.control.hold_back({"type": "result", "main": True, "data": mime_bundle(value)})

    def run_handler(self, code, event):
        # A fresh namespace, named so that `if __name__ == "__main__":` blocks stay out.
        namespace = {"__name__": "__handler__", "__builtins__": builtins}
        self.execute(code, "<handler>", namespace, show_last=False)
        handler = namespace.get("handler")
        if not callable(handler):
            raise HandlerNotFound("the code defines no function `handler(event)`")
        value = handler(event)
        if is_awaitable(value):
            value = self.run_awaitable(value)
        self.control.hold_back({"type": "result", "main": True, "data": handler_result(value)})

    def execute(self, source, filename, namespace, show_last):
        """Runs the source; returns the value of its last expression when show_last says so."""
        # Registered first, so that tracebacks and syntax errors can quote the source.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        body, last = compile_source(source, filename, show_last)
        if body is not None:
            self.run_code(body, namespace)
        return None if last is None else self.run_code(last, namespace)

    def run_code(self, code, namespace):
        value = eval(code, namespace)
        if code.co_flags & CO_COROUTINE:  # top-level await: eval made a coroutine
            value = self.run_awaitable(value)
        return value

    def run_awaitable(self, awaitable):
        import asyncio

        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        # Set at every run: the user's asyncio.run() unsets the current loop when it ends.
        asyncio.set_event_loop(self.loop)
        task = asyncio.ensure_future(awaitable, loop=self.loop)
        try:
            return self.loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                # Interrupted: cancel the task, or its code would resume in a later run.
                task.cancel()
                try:
                    self.loop.run_until_complete(task)  # runs its finally clauses
                except BaseException:
                    pass  # the cancellation, or another interrupt: the first one is reported
            raise

    def flush_figures(self):
        """Shows the figures left open, as Jupyter's inline backend does after a cell."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None and pyplot.get_backend() == "module://" + MPL_BACKEND_MODULE:
            self.show_figures()

    def show_figures(self, *args, **kwargs):
        """The backend's `show()`: sends the open figures as results, then closes them."""
        pyplot = sys.modules["matplotlib.pyplot"]
        try:
            for number in pyplot.get_fignums():
                self.send_result(figure_data(pyplot.figure(number)), main=False)
        finally:
            pyplot.close("all")

    def display(self, *objects):
        """IPython's display(): shows each object as a result of the run, beside its value."""
        for value in objects:
            self.send_result(mime_bundle(value), main=False)

    def send_result(self, data, main):
        self.control.send({"type": "result", "main": main, "data": data})

    def report(self, exc):
        self.control.send(
            {
                "type": "error",
                "name": type(exc).__name__,
                "value": safe_str(exc),
                "traceback": format_exception(exc),
            }
        )


def compile_source(source, filename, split_last):
    """The code of the source, and apart that of its last statement if split_last and it
    is an expression (None otherwise), like IPython. Both may use top-level await; the first
    is None when the whole source is that expression."""
    if split_last:
        # A cell that is one expression (the commonest kind) compiles once, without the tree.
        try:
            return None, compile(source, filename, "eval", COMPILE_FLAGS, dont_inherit=True)
        except SyntaxError:
            pass
    tree = compile(source, filename, "exec", ast.PyCF_ONLY_AST | COMPILE_FLAGS, dont_inherit=True)
    last = None
    try:
        if split_last and tree.body and isinstance(tree.body[-1], ast.Expr):
            expression = ast.Expression(tree.body.pop().value)
            last = compile(expression, filename, "eval", COMPILE_FLAGS, dont_inherit=True)
        return compile(tree, filename, "exec", COMPILE_FLAGS, dont_inherit=True), last
    except SyntaxError as exc:
        # Errors found past parsing (`return` outside a function...) come without the line.
        if exc.text is None and exc.lineno:
            exc.text = linecache.getline(filename, exc.lineno)
        raise


def is_awaitable(value):
    import collections.abc  # cheap: ast has imported collections already

    return isinstance(value, collections.abc.Awaitable)


def mime_bundle(value):
    """The representations of a cell's value: its repr, and those its _repr_*_ methods give."""
    data = {"text/plain": repr(value)}
    # Builtin values have no _repr_*_ methods; a class's are for its instances.
    if type(value) in PLAIN_TYPES or isinstance(value, type):
        return data
    for method, mime in REPR_METHODS:
        add_representation(data, mime, call_repr(value, method))
    bundle = call_repr(value, "_repr_mimebundle_", include=None, exclude=None)
    if isinstance(bundle, tuple):  # (data, metadata), as IPython allows
        bundle = bundle[0]
    if isinstance(bundle, dict):
        for mime, representation in bundle.items():
            add_representation(data, mime, representation)
    return data


def call_repr(value, method, **kwargs):
    """What the value's repr method returns; None if it has none or it fails."""
    try:
        return getattr(value, method)(**kwargs)
    except Exception:
        return None


def add_representation(data, mime, representation):
    """Adds a representation if it fits its MIME type: JSON for JSON types, text otherwise."""
    if isinstance(representation, tuple):  # (data, metadata), as IPython allows
        representation = representation[0]
    if isinstance(representation, (bytes, bytearray)):  # binary images travel as base64
        representation = base64_text(representation)
    if mime == "application/json" or mime.endswith("+json"):
        if representation is not None and is_json(representation):
            data[mime] = representation
    elif isinstance(representation, str):
        data[mime] = representation


def handler_result(value):
    if is_json(value):
        return {"application/json": value}
    return {"text/plain": repr(value)}


def is_json(value):
    # Strict JSON: the agent's parser refuses NaN and Infinity, and would drop the message.
    try:
        json.dumps(value, allow_nan=False)
    except Exception:
        return False
    return True


def base64_text(data):
    import base64

    return base64.b64encode(data).decode("ascii")


def figure_data(figure):
    data = {"text/plain": repr(figure)}
    if figure.axes:  # like Jupyter, no image of a figure with nothing on it
        png = io.BytesIO()
        figure.savefig(png, format="png", bbox_inches="tight")
        data["image/png"] = base64_text(png.getvalue())
    return data


def safe_str(exc):
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def format_exception(exc):
    import traceback

    tb = user_traceback(exc.__traceback__)
    return traceback.format_exception(type(exc), exc, tb)


def user_traceback(tb):
    """The traceback without the kernel's frames, nor asyncio's that lead to the user's."""
    entries = []
    while tb is not None:
        if tb.tb_frame.f_globals is not KERNEL_GLOBALS:
            entries.append(tb)
        tb = tb.tb_next
    while entries and str(entries[0].tb_frame.f_globals.get("__name__")).startswith("asyncio"):
        del entries[0]
    for entry, next_entry in zip(entries, entries[1:] + [None]):
        entry.tb_next = next_entry
    return entries[0] if entries else None


def replace_stdin(data):
    """Makes `data` the process's standard input (fd 0 and sys.stdin)."""
    fd = os.memfd_create("stdin")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))


def exit_status(exc):
    """The exit status of a SystemExit, as the interpreter computes it."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write("%s\n" % (code,))
    return 1


def flush_output():
    # The agent needs every byte the run wrote to fd 1 and 2 before any control message.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass  # the user's code replaced or closed the stream


class MatplotlibHook:
    """Gives matplotlib the kernel's backend when the user's code imports it.

    A meta path finder and, for the backend module, its loader. The backend module exists only
    in this process, so MPLBACKEND, which user subprocesses would inherit, cannot name it: the
    kernel sets rcParams["backend"] right after matplotlib's own import instead. The backend
    draws with Agg, and its `show()` sends the figures as results.
    """

    def __init__(self, show):
        self.show = show

    def find_spec(self, name, path=None, target=None):
        if name == MPL_BACKEND_MODULE:
            return importlib.machinery.ModuleSpec(name, self)
        if name != "matplotlib" or os.environ.get("MPLBACKEND"):  # the user's choice wins
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(matplotlib):
                load(matplotlib)
                matplotlib.rcParams["backend"] = "module://" + MPL_BACKEND_MODULE

            spec.loader.exec_module = exec_module
        return spec

    def create_module(self, spec):
        return None  # a plain module

    def exec_module(self, backend):
        # Imported by pyplot when it first needs the backend: only then load Agg.
        from matplotlib.backends import backend_agg

        backend.FigureCanvas = backend_agg.FigureCanvas
        backend.FigureManager = backend_agg.FigureManager
        backend.new_figure_manager = backend_agg.new_figure_manager
        backend.show = self.show


def take_fd(name):
    """The pipe the agent passed in the variable, kept from the user's subprocesses."""
    fd = int(os.environ.pop(name))
    os.set_inheritable(fd, False)
    return fd


def read_lines(fd):
    """Yields the lines read from the fd until end of file."""
    pending = bytearray()
    searched = 0  # pending[:searched] holds no newline
    while True:
        newline = pending.find(b"\n", searched)
        if newline >= 0:
            yield bytes(pending[:newline])
            del pending[: newline + 1]
            searched = 0
            continue
        searched = len(pending)
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        pending += chunk


def main():
    interrupts = Interrupts()  # first: from here on a SIGINT can no longer kill the kernel
    request_fd = take_fd("AIRLOCK_REQUEST_FD")
    control = Control(take_fd("AIRLOCK_CONTROL_FD"), interrupts)
    kernel = Kernel(control, interrupts)
    sys.modules["__main__"] = kernel.main  # so that pickle finds the cells' classes
    sys.argv = [""]
    # Output streams a line at a time, as on a terminal: whole lines reach the user as they
    # are printed, without an event per write.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    sys.meta_path.insert(0, MatplotlibHook(kernel.show_figures))
    control.send({"type": "ready", "pid": os.getpid()})
    for line in read_lines(request_fd):
        if line.strip():
            kernel.serve(line)


main()
