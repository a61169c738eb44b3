"""ncat's option table, as data.

The short-option string and the long-option list follow ncat's ``getopt_long`` table
(7.96+), so that the same command line means the same thing to both tools. Options
that enchufe recognises but does not implement yet are listed in :data:`NOT_YET`:
they are refused with a clear message, never ignored.

enchufe's own options (:data:`ENCHUFE_OPTIONS`) come after ncat's, and an
abbreviation reaches them only when it means no option of ncat's (``--w`` is still
``--wait``, ``--wo`` is ``--workers``): every abbreviation ncat accepts means the same
option here, and one that ncat finds ambiguous stays ambiguous (its list of
possibilities ends with ours).
"""

from __future__ import annotations

__all__ = [
    "ENCHUFE_NAMES",
    "ENCHUFE_OPTIONS",
    "LONG_IDENTITY",
    "LONG_OPTIONS",
    "LONG_TO_SHORT",
    "NCAT_LONG_OPTIONS",
    "NOT_YET",
    "SHORT_OPTIONS",
    "USAGE",
]

#: getopt's short-option string: a letter, followed by ``:`` when it takes a value.
SHORT_OPTIONS = "46UCc:e:g:G:i:km:hp:d:lo:x:ts:uvw:nzq:"

#: ncat's long options, in its table's order (glibc takes the first of equivalent
#: abbreviations); ``=`` marks those that take a value (getopt's convention).
NCAT_LONG_OPTIONS = [
    "4", "6", "unixsock", "vsock", "crlf", "g=", "G=", "exec=", "sh-exec=", "lua-exec=",
    "max-conns=", "help", "delay=", "listen", "output=", "hex-dump=", "append-output",
    "idle-timeout=", "keep-open", "recv-only", "source-port=", "source=", "send-only",
    "no-shutdown", "broker", "chat", "talk", "deny=", "denyfile=", "allow=", "allowfile=",
    "telnet", "udp", "sctp", "version", "verbose", "wait=", "nodns", "proxy=", "proxy-type=",
    "proxy-auth=", "proxy-dns=", "nsock-engine=", "test", "ssl", "ssl-cert=", "ssl-key=",
    "ssl-verify", "ssl-trustfile=", "ssl-ciphers=", "ssl-servername=", "ssl-alpn=",
]  # fmt: skip

#: Options ncat does not have: a label per client line on stdout (nmap/nmap#2567),
#: chat's prefix on every line, the host's output seeing the room (nmap/nmap#1794),
#: Python handlers, the PROXY protocol behind a balancer, worker processes
#: (serve/workers.py). No abbreviation that means an ncat option reaches them.
ENCHUFE_OPTIONS = ["client-labels", "full-lines", "host-sees-room", "py-exec=", "proxy-protocol=", "workers="]

#: The table getopt reads: ncat's, then ours.
LONG_OPTIONS = NCAT_LONG_OPTIONS + ENCHUFE_OPTIONS
#: Our names, which an abbreviation that means an option of ncat's does not reach.
ENCHUFE_NAMES = frozenset(name.rstrip("=") for name in ENCHUFE_OPTIONS)

#: Long options that are another name for a short one.
LONG_TO_SHORT = {
    "--4": "-4", "--6": "-6", "--g": "-g", "--G": "-G", "--unixsock": "-U", "--crlf": "-C",
    "--sh-exec": "-c", "--exec": "-e", "--max-conns": "-m", "--help": "-h", "--delay": "-d",
    "--listen": "-l", "--output": "-o", "--hex-dump": "-x", "--idle-timeout": "-i",
    "--keep-open": "-k", "--source-port": "-p", "--source": "-s", "--telnet": "-t",
    "--udp": "-u", "--verbose": "-v", "--wait": "-w", "--nodns": "-n",
}  # fmt: skip

#: Long options that set a flag of their own in ncat's table; the other long-only
#: options all share getopt's value 0, which makes their abbreviations equivalent.
_FLAG_OPTIONS = frozenset({"recv-only", "send-only", "no-shutdown", "ssl"})

#: What glibc compares to decide whether two long options an abbreviation matches are
#: "the same" (has_arg, flag, val): the short letter, a flag of its own, or val 0.
LONG_IDENTITY = {
    name.rstrip("="): LONG_TO_SHORT.get("--" + name.rstrip("="))
    or (name.rstrip("=") if name.rstrip("=") in _FLAG_OPTIONS else "0")
    for name in LONG_OPTIONS
}

#: Options recognised but not implemented yet: refused with exit status 2.
NOT_YET = frozenset({"--vsock"})

USAGE = """\
enchufe {version}, an ncat-compatible netcat
Usage: enchufe [options] [hostname] [port]

Options taking a time assume seconds. Append 'ms' for milliseconds,
's' for seconds, 'm' for minutes, or 'h' for hours (e.g. 500ms).
  -4                         Use IPv4 only
  -6                         Use IPv6 only
  -U, --unixsock             Use Unix domain sockets only
      --vsock                Use vsock sockets only (not supported yet)
  -C, --crlf                 Use CRLF for EOL sequence
  -c, --sh-exec <command>    Executes the given command via /bin/sh
  -e, --exec <command>       Executes the given command
      --lua-exec <filename>  Executes the given Lua script (needs enchufe[lua])
  -g hop1[,hop2,...]         Loose source routing hop points (8 max)
  -G <n>                     Loose source routing hop pointer (4, 8, 12, ...)
  -m, --max-conns <n>        Maximum <n> simultaneous connections
  -h, --help                 Display this help screen
  -d, --delay <time>         Wait between read/writes
  -o, --output <filename>    Dump session data to a file
  -x, --hex-dump <filename>  Dump session data as hex to a file
  -i, --idle-timeout <time>  Idle read/write timeout (listen: per connection)
  -p, --source-port port     Specify source port to use
  -s, --source addr          Specify source address to use (doesn't affect -l)
  -l, --listen               Bind and listen for incoming connections
  -k, --keep-open            Accept multiple connections in listen mode
  -n, --nodns                Do not resolve hostnames via DNS
  -t, --telnet               Answer Telnet negotiations
  -u, --udp                  Use UDP instead of default TCP
      --sctp                 Use SCTP instead of default TCP
  -v, --verbose              Set verbosity level (can be used several times)
  -w, --wait <time>          Connect timeout (listen: wait for the first client)
  -z                         Zero-I/O mode, report connection status only
  -q <time>                  After EOF on stdin, wait <time> then quit (negative: never)
      --append-output        Append rather than clobber specified output files
      --send-only            Only send data, ignoring received; quit on EOF
      --recv-only            Only receive data, never send anything
      --no-shutdown          Continue half-duplex when receiving EOF on stdin
      --allow                Allow only given hosts to connect
      --allowfile            A file of hosts allowed to connect
      --deny                 Deny given hosts from connecting
      --denyfile             A file of hosts denied from connecting
      --broker               Enable connection brokering mode
      --chat                 Start a simple chat server
      --proxy <addr[:port]>  Specify address of host to proxy through (a,b: a chain;
                             or type://[user:pass@]host:port for each hop)
      --proxy-type <type>    Specify proxy type ("http", "socks4", "socks5");
                             with -l, the proxy server to run
      --proxy-auth <auth>    Authenticate with HTTP or SOCKS proxy server
      --proxy-dns <type>     Specify where to resolve proxy destination
      --ssl                  Connect or listen with SSL
      --ssl-cert             Specify SSL certificate file (PEM) for listening
      --ssl-key              Specify SSL private key (PEM) for listening
      --ssl-verify           Verify trust and domain name of certificates
      --ssl-trustfile        PEM file containing trusted SSL certificates
      --ssl-ciphers          Cipherlist containing SSL ciphers to use
      --ssl-servername       Request distinct server name (SNI)
      --ssl-alpn             ALPN protocol list to use
      --nsock-engine <name>  Accepted for compatibility (epoll, poll, select); no effect
      --version              Display enchufe's version information and exit
      --client-labels        -l -k: each client's lines on stdout after [its address]
      --full-lines           --chat: a <userN> prefix on every line, not every read
      --host-sees-room       --broker, --chat: stdout gets what the room delivers
      --py-exec <handler>    Runs handle(conn) of a Python file, or module:function
      --proxy-protocol <hosts>
                             Listen behind load balancers: each peer, one of <hosts>
                             (as --allow), starts with a PROXY header (v1 or v2)
                             naming the client; any other peer is refused
      --workers <n>          -l -k with -e/-c/--lua-exec/--py-exec, -l --proxy-type:
                             serve in <n> processes sharing the port (SO_REUSEPORT)

See the ncat(1) manpage for full options, descriptions and usage examples
"""
