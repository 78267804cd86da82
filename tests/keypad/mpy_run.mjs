// Run a MicroPython script under the real MicroPython WebAssembly port (Node).
// usage: node mpy_run.mjs HEAP_BYTES SCRIPT [DIR...]  — every *.py of each DIR is copied to /lib first.
// The script's stdout goes to stdout; an uncaught Python exception → its traceback on stderr, exit 1.
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const deps = path.resolve(process.env.KEYPAD_DEPS);
const pkg = path.join(deps, "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs");
const { loadMicroPython } = await import(pathToFileURL(pkg).href);
const [heap, script, ...dirs] = process.argv.slice(2);
const mp = await loadMicroPython({
  heapsize: parseInt(heap, 10),
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
mp.FS.mkdir("/lib");
for (const dir of dirs) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && fs.existsSync(path.join(dir, entry.name, "__init__.py")) || entry.name === "umqtt") {
      mp.FS.mkdir("/lib/" + entry.name);
      for (const f of fs.readdirSync(path.join(dir, entry.name)).filter((f) => f.endsWith(".py")))
        mp.FS.writeFile(`/lib/${entry.name}/${f}`, fs.readFileSync(path.join(dir, entry.name, f)));
    } else if (entry.isFile() && entry.name.endsWith(".py")) {
      mp.FS.writeFile("/lib/" + entry.name, fs.readFileSync(path.join(dir, entry.name)));
    }
  }
}
// Segments separated by a line "#@segment" run as separate runPython calls (globals persist). The port's
// gc.collect() frees nothing while a call runs (it scans the whole WebAssembly stack), only between
// calls: heap figures are taken in a later segment. "#@repeat N" as a segment's first line runs it N times;
// a line "#@then" splits a repeated segment into calls made one after the other.
const segments = ("import sys\nsys.path.append('/lib')\n" + fs.readFileSync(script, "utf8")).split("\n#@segment\n");
try {
  for (const seg of segments) {
    const m = seg.match(/^#@repeat (\d+)\n/);
    for (let i = 0; i < (m ? parseInt(m[1], 10) : 1); i++)
      for (const part of seg.split("\n#@then\n")) mp.runPython(part);
  }
} catch (error) {
  if (error.name !== "PythonError") throw error;
  process.stderr.write(error.message + "\n");
  process.exit(1);
}
