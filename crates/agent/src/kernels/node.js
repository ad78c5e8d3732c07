// Airlock JavaScript kernel, run as `node -e <this file>`.
//
// Requests arrive as JSON lines on AIRLOCK_REQUEST_FD; control messages go out
// as JSON lines on AIRLOCK_CONTROL_FD; user output goes to fds 1 and 2.
// Everything lives in a strict-mode function so that none of the kernel's
// names land in the global scope that user cells share.
(() => {
  'use strict';

  const EventEmitter = require('events');
  const fs = require('fs');
  const Module = require('module');
  const net = require('net');
  const path = require('path');
  const readline = require('readline');
  const repl = require('repl');
  const { Readable, Writable } = require('stream');
  const util = require('util');
  const vm = require('vm');

  const requestFd = reopen('AIRLOCK_REQUEST_FD', fs.constants.O_RDONLY);
  const controlFd = reopen('AIRLOCK_CONTROL_FD', fs.constants.O_WRONLY);

  // The inherited fds lack close-on-exec. A copy opened through /proc gets
  // O_CLOEXEC from libuv, so processes spawned by user code never see the
  // channels; the originals are closed and their variables removed.
  function reopen(name, flags) {
    const fd = Number(process.env[name]);
    delete process.env[name];
    const copy = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return copy;
  }

  // libuv makes stdout/stderr pipes non-blocking, which lets output pile up
  // in memory under a busy loop and hands children an O_NONBLOCK pipe (EAGAIN
  // on a full pipe). Blocking writes give back-pressure and keep writes
  // synchronous, in order with the control messages.
  for (const stream of [process.stdout, process.stderr]) {
    stream._handle?.setBlocking?.(true);
  }

  // Node's own REPL gives the cell semantics: top-level declarations persist,
  // top-level await works (declarations included) and the completion value
  // comes back. Its eval is driven directly; its streams are dummies. The REPL
  // binds its eval to a domain, which would send this run's errors and later
  // errors of user callbacks to the REPL's printer instead of to us; and a
  // domain turns on async hooks that make every await ten times slower. So it
  // gets a stand-in whose bind() leaves the eval as it is.
  const server = new repl.REPLServer({
    input: new Readable({ read() {} }),
    output: new Writable({ write: (chunk, encoding, done) => done() }),
    terminal: false,
    useGlobal: true,
    domain: Object.assign(new EventEmitter(), { bind: (fn) => fn }),
  });

  // Synchronous JS can only be aborted by vm's breakOnSigint: a watchdog
  // thread, started for each call, terminates execution on SIGINT. This
  // one-line script runs `fn` under it, so the REPL's eval and handler calls
  // are interruptible. Limits, all Node's: vm detaches our SIGINT listener
  // while it runs and re-attaches it after, and around those switches (some
  // 50 us a run, mostly starting the thread) SIGINT has its default, fatal
  // action; code that runs after an `await` is outside the watchdog, so a
  // busy loop there cannot be stopped (terminating it otherwise crashes Node).
  const callContext = vm.createContext({ fn: null });
  const callScript = new vm.Script('fn()');
  function runInterruptibly(fn) {
    callContext.fn = fn;
    try {
      return callScript.runInContext(callContext, { breakOnSigint: true, displayErrors: false });
    } finally {
      callContext.fn = null;
    }
  }

  // An error the kernel reports itself: no stack worth showing.
  class KernelError extends Error {
    constructor(name, message) {
      super(message);
      this.name = name;
    }
  }

  const interrupted = () => new KernelError('Interrupted', 'Execution was interrupted by SIGINT');

  // SIGINT while user code awaits: abandon the run. While idle: ignore it.
  let interruptRun = null;
  process.on('SIGINT', () => interruptRun?.());

  // Errors from user callbacks that outlive their run must not kill the kernel.
  process.on('uncaughtException', (err) => {
    process.stderr.write(`Uncaught ${util.inspect(err)}\n`);
  });
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`Unhandled rejection: ${util.inspect(reason)}\n`);
  });

  // Control messages must come after everything user code printed. Blocking
  // writes are done when write() returns, except one cut short by a signal,
  // which libuv finishes later: wait for that.
  async function send(message) {
    for (const stream of [process.stdout, process.stderr]) {
      if (stream.writableLength > 0) await new Promise((resolve) => stream.write('', resolve));
    }
    const data = Buffer.from(`${JSON.stringify(message)}\n`);
    for (let offset = 0; offset < data.length;) {
      offset += fs.writeSync(controlFd, data, offset);
    }
  }

  const result = (data) => ({ type: 'result', main: true, data });

  function runCell(code, count) {
    return new Promise((resolve, reject) => {
      runInterruptibly(() => server.eval(`${code}\n`, globalThis, `<cell ${count}>`,
        (err, value) => (err ? reject(err) : resolve(value))));
    }).then((value) => {
      if (value === undefined) return null;
      server.last = value; // the REPL's `_`, as in Node's REPL
      return result({ 'text/plain': util.inspect(value) });
    });
  }

  // Handler mode runs `code` as a fresh CommonJS module through Node's own
  // loader (require, require.resolve and import() relative to the cwd). A
  // line added after the code reports a top-level `handler` declaration.
  const DECLARE = "\n;module[Symbol.for('airlock.handler')] = typeof handler === 'function' ? handler : undefined;";
  // A module that declares no `handler` sees, through the global scope, one
  // that a cell may have declared: that one is not the module's.
  const globalHandler = new vm.Script("typeof handler === 'function' ? handler : undefined");

  async function runHandler(code, event) {
    const dir = process.cwd();
    const filename = path.join(dir, '[handler]');
    const mod = new Module(filename);
    mod.filename = filename;
    mod.paths = Module._nodeModulePaths(dir);
    const inherited = globalHandler.runInThisContext();
    const value = runInterruptibly(() => {
      compileModule(mod, code, filename);
      return handlerOf(mod, inherited)(event);
    });
    return handlerResult(await value);
  }

  function handlerOf(mod, inherited) {
    const exported = mod.exports;
    const declared = mod[Symbol.for('airlock.handler')];
    const handler = typeof exported?.handler === 'function' ? exported.handler
      : typeof exported === 'function' ? exported
        : declared !== inherited ? declared : undefined;
    if (!handler) {
      throw new KernelError('HandlerNotFound',
        'no handler: set module.exports.handler or module.exports to a function, or declare function handler');
    }
    return handler;
  }

  function compileModule(mod, code, filename) {
    try {
      mod._compile(code + DECLARE, filename);
    } catch (err) {
      if (err instanceof SyntaxError) {
        // Show the error as the code alone has it, without the added line.
        vm.compileFunction(code, ['exports', 'require', 'module', '__filename', '__dirname'], { filename });
      }
      throw err;
    }
  }

  // JSON when JSON.stringify can represent the value, else its inspection.
  function handlerResult(value) {
    try {
      const json = JSON.stringify(value === undefined ? null : value);
      if (json !== undefined) return result({ 'application/json': JSON.parse(json) });
    } catch {
      // Circular structures, BigInts: fall through to text.
    }
    return result({ 'text/plain': util.inspect(value) });
  }

  function errorMessage(err) {
    if (err instanceof repl.Recoverable) err = err.err; // incomplete input
    if (err?.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') err = interrupted();
    if (!(err instanceof Error || util.types.isNativeError(err))) {
      const value = typeof err === 'string' ? err : util.inspect(err);
      return { type: 'error', name: typeof err, value, traceback: [`Uncaught ${util.inspect(err)}`] };
    }
    const name = String(err.name);
    const value = String(err.message);
    const stack = err instanceof KernelError || typeof err.stack !== 'string' ? `${name}: ${value}` : err.stack;
    return { type: 'error', name, value, traceback: userFrames(stack) };
  }

  // Frames from the first one in vm, the REPL or this kernel on are the
  // kernel's machinery; other node: frames are Node internals.
  const KERNEL_FRAME = /^\s+at (?:.* \()?(?:node:vm|node:repl|\[eval\])/;
  const INTERNAL_FRAME = /^\s+at (?:.* \()?node:/;
  function userFrames(stack) {
    const lines = stack.split('\n');
    const end = lines.findIndex((line) => KERNEL_FRAME.test(line));
    return lines.slice(0, end < 0 ? undefined : end).filter((line) => !INTERNAL_FRAME.test(line));
  }

  function execute(request) {
    if (request.mode === 'handler') return runHandler(request.code, request.event);
    if (request.mode === 'cell') return runCell(request.code, request.execution_count);
    throw new KernelError('BadRequest', `unknown mode ${JSON.stringify(request.mode)}`);
  }

  // One run: at most one result or error, then end. A SIGINT while the run
  // awaits rejects `stopped`; the pending work is abandoned.
  async function handle(line) {
    const stopped = new Promise((resolve, reject) => {
      interruptRun = () => reject(interrupted());
    });
    let message;
    try {
      message = await Promise.race([execute(JSON.parse(line)), stopped]);
    } catch (err) {
      try {
        message = errorMessage(err);
      } catch {
        message = { type: 'error', name: 'Error', value: 'unprintable error', traceback: [] };
      }
    } finally {
      interruptRun = null;
    }
    if (message) await send(message);
    await send({ type: 'end' });
  }

  async function serve() {
    const input = new net.Socket({ fd: requestFd, readable: true, writable: false });
    await send({ type: 'ready', pid: process.pid });
    for await (const line of readline.createInterface({ input, crlfDelay: Infinity })) {
      if (line.trim()) await handle(line);
    }
    process.exit(0);
  }

  serve().catch((err) => {
    process.stderr.write(`airlock kernel failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
})();
