"""Lua scripts for ``--lua-exec``, the cases of ncat's own test suite (ncat-test.pl),
run by the command tests and, unchanged, by the interop tests under ncat 7.93."""

from __future__ import annotations

from pathlib import Path

#: name → script. Each reads and writes its standard input and output, the connection.
SCRIPTS = {
    # ncat's toupper.lua: byte by byte, flushed at once.
    "toupper": """
while true do
  local data = io.read(1)
  if data == nil then break end
  io.write(data:upper())
  io.flush()
end
""",
    # Line by line: print flushes after each line, as in ncat.
    "lines": """
for line in io.lines() do
  print("line: " .. line)
end
print("done")
""",
    "environment": """
for _, name in ipairs({"NCAT_REMOTE_ADDR", "NCAT_REMOTE_PORT", "NCAT_LOCAL_ADDR", "NCAT_LOCAL_PORT", "NCAT_PROTO"}) do
  print(name .. "=" .. tostring(os.getenv(name)))
end
""",
    # Exits at once, having read nothing.
    "hello": """
print("hello")
""",
    # io.write without a flush: the buffer is written when the script ends.
    "unflushed": """
io.write("no newline, no flush")
""",
    # io.write waits in stdout's buffer (a pipe's: full) until the script ends.
    "buffered": """
io.write("written first, ")
io.write("sent at exit: " .. io.read() .. "\\n")
""",
    "error": """
io.write("before\\n")
io.flush()
error("the script gave up")
""",
}


def write_script(directory: Path, name: str) -> str:
    path = directory / f"{name}.lua"
    path.write_text(SCRIPTS[name])
    return str(path)
