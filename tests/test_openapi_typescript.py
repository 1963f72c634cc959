"""A TypeScript client generated from the schema is typed all the way down: no ``unknown``.

openapi-typescript's CLI turns the served document into types, as a frontend would, and
``tsc --strict`` compiles them with a check written in the type system: ``HasUnknown<T>``
walks every type reachable from each operation's JSON bodies (responses and request bodies),
through arrays, objects and unions, recursive ones (``JsonValue``, ``ValidationError``)
included, and the compile error names every body for which it is not ``false``. A schema left
untyped (``{}``, ``additionalProperties: true``) is ``unknown`` there, and a union that holds
arrays of itself is ``any`` (tsc: "referenced directly or indirectly in its own type
annotation", openapi-ts/openapi-typescript#1603), which the check sees too. Besides, no
component of the generated file mentions ``unknown``.

Both tools are npm packages of package.json's devDependencies, which ``make pytest`` installs
(``npm ci``) into node_modules/; without them the tests fail, they never skip.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from drf_spectacular.renderers import OpenApiJsonRenderer

from jobs.api.settings import generate_schema

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "node_modules" / ".bin"

# The compile-time check. ``Seen`` holds the types already entered, so a recursive type ends.
CHECK = """\
import type { operations } from "./api";

type HasUnknown<T, Seen = never> = unknown extends T ? true : [T] extends [Seen] ? false : Members<T, Seen | T>;
type Members<T, Seen> = T extends readonly (infer E)[]
  ? HasUnknown<E, Seen>
  : T extends object
    ? true extends { [K in keyof T]-?: HasUnknown<T[K], Seen> }[keyof T]
      ? true
      : false
    : false;

type Json<R> = R extends { content: { "application/json": infer B } } ? B : never;
type Request<Op extends keyof operations> = operations[Op] extends { requestBody?: infer R } ? Json<R> : never;
type Ops = keyof operations & string;
type Statuses<Op extends Ops> = keyof operations[Op]["responses"] & (string | number);

// Fails to compile while a body has an `unknown`; the error lists them. (Declared inline, not as a
// type alias, so that tsc prints the names rather than the alias.)
declare const untyped:
  | {
      [Op in Ops]: {
        [S in Statuses<Op>]: HasUnknown<Json<operations[Op]["responses"][S]>> extends false
          ? never
          : `${Op}: the ${S} response`;
      }[Statuses<Op>];
    }[Ops]
  | { [Op in Ops]: HasUnknown<Request<Op>> extends false ? never : `${Op}: the request body` }[Ops];
export const none: never = untyped;

// The check itself sees `unknown`, nested or recursive, and passes typed recursion.
type Recursive = string | Recursive[] | { [key: string]: Recursive };
export const sees: [
  HasUnknown<{ a: { b: unknown[] } }>,
  HasUnknown<{ a?: Recursive | { c: unknown } }>,
  HasUnknown<Recursive | { a: number | null }>,
] = [true, true, false];
"""


def _tool(name: str) -> str:
    path = NODE_BIN / name
    if not path.exists():
        pytest.fail(
            f"node_modules/.bin/{name} is missing: `make pytest` installs it (`npm ci`, package.json's "
            "devDependencies openapi-typescript and typescript)."
        )
    return str(path)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def typescript_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """openapi-typescript's types of the served document (``api.ts``), in a temporary folder."""
    openapi_typescript, _ = _tool("openapi-typescript"), _tool("tsc")
    folder = tmp_path_factory.mktemp("typescript")
    schema = json.loads(OpenApiJsonRenderer().render(generate_schema()))  # as /api/schema/ serves it
    (folder / "schema.json").write_text(json.dumps(schema))
    generated = _run([openapi_typescript, "schema.json", "--output", "api.ts"], folder)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    return folder


def test_no_body_of_the_typescript_client_has_an_unknown_type(typescript_client: Path) -> None:
    (typescript_client / "check.ts").write_text(CHECK)
    command = [_tool("tsc"), "--strict", "--noEmit", "--noErrorTruncation", "--target", "es2022"]
    command += ["--module", "es2022", "--moduleResolution", "bundler", "api.ts", "check.ts"]
    compiled = _run(command, typescript_client)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


def test_no_component_of_the_typescript_client_is_unknown(typescript_client: Path) -> None:
    source = (typescript_client / "api.ts").read_text()
    schemas = source[source.index("export interface components {") :]
    schemas = schemas[: schemas.index("\n    responses:")]
    component, untyped = "", []
    for line in schemas.splitlines():
        if match := re.match(r"^ {8}(\w+): ", line):
            component = match.group(1)
        code = line.strip()
        if not code.startswith(("*", "/*", "//")) and re.search(r"\bunknown\b", code):
            untyped.append(f"{component}: {code}")
    assert untyped == []
