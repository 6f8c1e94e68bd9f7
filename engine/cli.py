"""Command line: a thin typer layer over the library. `diagnose CAPTURE [--playbook NAME ...]` is the main form;
subcommands (list, flows, info, ...) sit next to it.

Every user mistake ends as one line on stderr and exit code 2 (never a traceback); findings at or above --fail-on
exit 1; a clean run exits 0.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from diagnose import __version__
from diagnose.errors import DiagnoseError

app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Turn a packet capture into a diagnosis: what went wrong, and which packets prove it.\n\n"
                       "Main form: diagnose CAPTURE [--playbook NAME ...]")

CaptureArg = Annotated[str, typer.Argument(help="pcap or pcapng file (also .gz), or - for standard input",
                                           show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"diagnose {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                          help="print the version")] = None) -> None:
    pass


# -- the main form ---------------------------------------------------------------------------------------------------
@app.command("analyze", help="Diagnose a capture (the main form: `diagnose CAPTURE` runs this).")
def analyze(
    capture: CaptureArg,
    playbook: Annotated[Optional[list[str]], typer.Option("--playbook", "-p", help="playbook name or YAML file; "
                                                          "repeatable (default: all)")] = None,
    set_param: Annotated[Optional[list[str]], typer.Option("--set", help="override a rule parameter: NAME=VALUE "
                                                           "(e.g. tcp.retransmission-rate.threshold=0.5%)")] = None,
    fmt: Annotated[str, typer.Option("--format", "-F", help="text | markdown | html | json | ndjson | junit")]
    = "text",
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="write the report to FILE")] = None,
    fail_on: Annotated[str, typer.Option("--fail-on", help="exit 1 when a finding is at least: info | warning | "
                                         "error | never")] = "error",
    keylog: Annotated[Optional[list[str]], typer.Option("--keylog", help="TLS key log (SSLKEYLOGFILE format)")]
    = None,
    ca_file: Annotated[Optional[str], typer.Option("--ca-file", help="CA certificates (PEM) to verify chains "
                                                   "with, besides the system store")] = None,
) -> None:
    from diagnose.rules.run import run_diagnosis

    code = run_diagnosis(capture, playbook or None, set_param or [], fmt, output, fail_on, keylogs=keylog or None,
                         ca_file=ca_file)
    raise typer.Exit(code)


playbook_app = typer.Typer(help="List, check, explain and self-test playbooks.", no_args_is_help=True)
app.add_typer(playbook_app, name="playbook")


def _emit(result: tuple[str, int]) -> None:
    text, code = result
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    raise typer.Exit(code)


@playbook_app.command("list", help="The built-in playbooks and their rules.")
def playbook_list() -> None:
    from diagnose.playbook.commands import playbook_list as run

    _emit(run())


@playbook_app.command("validate", help="Check playbook files: every mistake as file:line:col.")
def playbook_validate(files: Annotated[list[str], typer.Argument(help="playbook YAML files")]) -> None:
    from diagnose.playbook.commands import playbook_validate as run

    _emit(run(files))


@playbook_app.command("explain", help="What a rule checks; with a capture, why it did or did not fire.")
def playbook_explain(rule: Annotated[str, typer.Argument(help="rule id, e.g. tcp.syn-unanswered")],
                     capture: Annotated[Optional[str], typer.Argument(help="capture to explain it on")] = None,
                     playbook: Annotated[Optional[list[str]], typer.Option("--playbook", "-p")] = None) -> None:
    from diagnose.playbook.commands import playbook_explain as run

    _emit(run(rule, playbook or None, capture))


@playbook_app.command("test", help="Run playbook self-tests (default: every built-in playbook).")
def playbook_test(files: Annotated[Optional[list[str]], typer.Argument(help="playbook files or names")] = None) -> None:
    from diagnose.playbook.commands import playbook_test as run

    _emit(run(files or None))


# -- inspection commands ----------------------------------------------------------------------------------------------
@app.command("info", help="Capture facts, like capinfos, plus capture artefacts (duplicates, offload, drops).")
def info(capture: CaptureArg, as_json: JsonOpt = False,
         no_checksums: Annotated[bool, typer.Option("--no-checksums", help="skip checksum verification")] = False
         ) -> None:
    from diagnose.report.info import collect_info, format_info

    summary = collect_info(capture, verify_checksums=not no_checksums)
    if as_json:
        import json  # imported by the commands that print JSON themselves: --help and --version start without it

        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_info(summary))
    _print_warnings(summary["warnings"])


@app.command("flows", help="Conversation table (like tshark -z conv,tcp) with Zeek's conn_state and history; "
                           "--json: every flow fact, one object per flow, with Zeek's conn.log names.")
def flows(capture: CaptureArg, as_json: JsonOpt = False) -> None:
    from diagnose.report.flows import collect_flows, write_json, write_table

    if as_json:
        warnings = write_json(capture, sys.stdout)
    else:
        view = collect_flows(capture)
        write_table(view, sys.stdout)
        warnings = view.warnings
    _print_warnings(warnings)


@app.command("list", help="One line per packet in the style of tcpdump -n.")
def list_packets(
    capture: CaptureArg,
    count: Annotated[Optional[int], typer.Option("-c", "--count", help="stop after N packets")] = None,
    time_format: Annotated[str, typer.Option("-t", "--time",
                                             help="local | utc | date | epoch | relative | delta (tcpdump -t variants)")] = "local",
    hex_ascii: Annotated[bool, typer.Option("-X", help="hex and ASCII of each packet, like tcpdump -X")] = False,
    write: Annotated[Optional[str], typer.Option("-w", "--write", help="write the selected packets to FILE "
                                                 "(.pcapng keeps interfaces, comments, secrets; .pcap)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing -w file")] = False,
    capture_filter: Annotated[Optional[str], typer.Option("-f", help="BPF capture filter (pcap-filter syntax)")] = None,
    display_filter: Annotated[Optional[str], typer.Option("-Y", help="Wireshark display filter")] = None,
    keylog: Annotated[Optional[list[str]], typer.Option("--keylog", help="TLS key log for decrypted fields")] = None,
) -> None:
    from diagnose.report.listing import run_list

    warnings = run_list(capture, count=count, time_format=time_format, hex_ascii=hex_ascii, write=write,
                        overwrite=overwrite, capture_filter=capture_filter, display_filter=display_filter,
                        keylogs=keylog or ())
    _print_warnings(warnings)


@app.command("count", help="Number of packets matching the filters (like tshark -Y ... | wc -l).")
def count_packets(
    capture: CaptureArg,
    capture_filter: Annotated[Optional[str], typer.Option("-f", help="BPF capture filter (pcap-filter syntax)")] = None,
    display_filter: Annotated[Optional[str], typer.Option("-Y", help="Wireshark display filter")] = None,
    keylog: Annotated[Optional[list[str]], typer.Option("--keylog", help="TLS key log for decrypted fields")] = None,
) -> None:
    from diagnose.report.listing import run_count

    total, warnings = run_count(capture, capture_filter=capture_filter, display_filter=display_filter,
                                keylogs=keylog or ())
    sys.stdout.write(f"{total}\n")
    _print_warnings(warnings)


@app.command("filter", help="Check a filter (--check) or print its classic BPF program (--bytecode, like tcpdump -d).")
def filter_command(
    expression: Annotated[str, typer.Argument(help="the filter", show_default=False)],
    check: Annotated[bool, typer.Option("--check", help="only check it")] = False,
    bpf: Annotated[bool, typer.Option("--bpf", "-f", help="a capture filter (pcap-filter); default: display "
                                      "filter")] = False,
    bytecode: Annotated[Optional[str], typer.Option("--bytecode", help="print the BPF program: d, dd or ddd "
                                                    "(like tcpdump -d/-dd/-ddd)")] = None,
    linktype: Annotated[int, typer.Option("--linktype", help="link type for --bytecode (1 = Ethernet)")] = 1,
) -> None:
    from diagnose.filters import check_filter, compile_bpf

    if bytecode is not None:
        if bytecode not in ("d", "dd", "ddd"):
            raise typer.BadParameter("--bytecode takes d, dd or ddd")
        sys.stdout.write(compile_bpf(expression, linktype).dump(bytecode).rstrip("\n") + "\n")
        return
    check_filter(expression, "bpf" if bpf else "display")
    sys.stdout.write(f"ok: valid {'capture' if bpf else 'display'} filter\n")


@app.command("follow", help="The bytes of one TCP stream, both directions marked (like Wireshark's Follow TCP "
                             "Stream); a TLS stream that a key log decrypts shows its plaintext (Follow TLS Stream).")
def follow(capture: CaptureArg,
           stream: Annotated[int, typer.Option("--stream", "-s", help="tcp.stream number")] = ...,
           fmt: Annotated[str, typer.Option("--format", "-F", help="ascii | hex | raw")] = "ascii",
           keylog: Annotated[list[str], typer.Option(
               "--keylog", help="TLS key log (SSLKEYLOGFILE format); repeatable. Also used: $SSLKEYLOGFILE and "
                                "secrets stored in a pcapng")] = None,
           tls: Annotated[bool | None, typer.Option(
               "--tls/--tcp", help="--tls: only the decrypted TLS application data (like tshark -z follow,tls); "
                                   "--tcp: the TCP bytes even when a key log decrypts them. Default: the plaintext "
                                   "when the stream decrypts, else the TCP bytes")] = None,
           as_json: JsonOpt = False) -> None:
    from diagnose.errors import UsageError
    from diagnose.report.follow import follow_with_notes

    if fmt not in ("ascii", "hex", "raw"):
        raise UsageError(f"unknown --format {fmt!r} (ascii, hex or raw)")
    if stream < 0:
        raise UsageError("--stream needs a tcp.stream number (0 or more)")
    layer = "auto" if tls is None else ("tls" if tls else "tcp")
    if layer == "tcp" and keylog:
        raise UsageError("--keylog decrypts TLS; with --tcp nothing is decrypted (drop one of them)")
    result, notes = follow_with_notes(capture, stream, fmt, as_json, layer=layer, keylogs=keylog or ())
    if as_json:
        import json  # imported by the commands that print JSON themselves: --help and --version start without it

        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result)
    _print_warnings(notes)


KeylogOpt = Annotated[list[str], typer.Option("--keylog", help="TLS key log (SSLKEYLOGFILE format); repeatable. "
                                                "Default: $SSLKEYLOGFILE and secrets stored in a pcapng")]


@app.command("keys", help="How a TLS key log matches the capture's TLS sessions (which decrypt, and why not).")
def keys(capture: CaptureArg, keylog: KeylogOpt = None, as_json: JsonOpt = False) -> None:
    from diagnose.report.keys import format_key_match, match_keys

    match = match_keys(capture, keylog or ())
    if as_json:
        import json  # imported by the commands that print JSON themselves: --help and --version start without it

        json.dump(match.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_key_match(match))
    _print_warnings(match.warnings)


@app.command("inject-secrets", help="Write a pcapng holding the key log as decryption secrets "
                                    "(like editcap --inject-secrets).")
def inject(capture: CaptureArg, keylog: KeylogOpt = None,
           output: Annotated[str, typer.Option("-o", "--output", help="the pcapng to write")] = ...,
           overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing output file")] = False,
           only_matching: Annotated[bool, typer.Option("--only-matching",
                                                       help="keep only the secrets of sessions in the capture")]
           = False) -> None:
    from diagnose.report.keys import inject_secrets

    result = inject_secrets(capture, keylog or (), output, overwrite=overwrite, only_matching=only_matching)
    sys.stdout.write(f"{output}: {result['packets']} packets, secrets of {result['client_randoms']} TLS sessions\n")
    _print_warnings(result["warnings"])


def _print_warnings(warnings: list[str]) -> None:
    for w in warnings:
        sys.stderr.write(f"warning: {w}\n")


# -- entry point ------------------------------------------------------------------------------------------------------
def _command_names() -> set[str]:
    """The subcommand names, read from the registrations: building the click command to ask costs ~6 ms."""
    names = {info.name or info.callback.__name__.replace("_", "-") for info in app.registered_commands}
    return names | {info.name for info in app.registered_groups}


def _route(argv: list[str]) -> list[str]:
    """`diagnose CAPTURE ...` and `diagnose --playbook x CAPTURE` mean `diagnose analyze ...`."""
    if not argv:
        return argv
    first = argv[0]
    if first in ("-h", "--help", "--version"):
        return argv
    if first not in _command_names():
        return ["analyze", *argv]
    return argv


def _click_command(args: list[str]):
    """The click group for these arguments. typer reflects over every command's signature when it builds one; a run of
    one top-level command builds only that command (the usage lines and errors it prints are the same)."""
    import copy

    first = args[0] if args else None
    chosen = [info for info in app.registered_commands if info.name == first]
    if not chosen:
        return typer.main.get_command(app)
    one = copy.copy(app)
    one.registered_commands, one.registered_groups = chosen, []
    return typer.main.get_command(one)


def main(argv: list[str] | None = None) -> None:
    import signal

    # Like cat or tcpdump: when the reader of our output goes away (`| head`), stop quietly.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = _route(list(sys.argv[1:] if argv is None else argv))
    command = _click_command(args)
    try:
        result = command.main(args=args, prog_name="diagnose", standalone_mode=False)
    except DiagnoseError as exc:
        sys.stderr.write(exc.one_line() + "\n")
        caret = getattr(exc, "caret", None)
        if caret is not None:
            sys.stderr.write(caret() + "\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click's own exceptions (typer may vendor click: match by shape, not class)
        kind = type(exc).__name__
        if kind == "Exit":
            sys.exit(getattr(exc, "exit_code", 0))
        if kind == "Abort":
            sys.exit(130)
        if kind == "NoArgsIsHelpError":
            sys.stdout.write(exc.format_message() + "\n")  # type: ignore[attr-defined]
            sys.exit(2)
        if hasattr(exc, "format_message"):
            sys.stderr.write(f"error: {exc.format_message()} (see diagnose --help)\n")
            sys.exit(2)
        raise
    sys.stdout.flush()
    if isinstance(result, int) and result:
        sys.exit(result)


def run() -> None:
    """The `diagnose` process: main(), then leave at once. Tearing the interpreter down (freeing a large run's arrays
    and numba's JIT engine object by object) takes ~0.1 s after every output is written and closed; the operating
    system frees a whole process faster."""
    import gc
    import os

    # Start-up (numpy, numba, the kernels) makes ~10^5 objects, none of them garbage: the collector's default
    # threshold would sweep them again and again (~30 ms); per-chunk work makes few objects anyway.
    gc.set_threshold(20_000, 20, 20)
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): Python prints it and exits 1
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away: nothing left to tell it
        pass
    os._exit(code)
