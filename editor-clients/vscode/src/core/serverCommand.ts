/**
 * Which command starts `huddle lsp`: the `huddle.server.command` setting, else the workspace's
 * own virtual environment, else `huddle` on PATH, else `python -m huddle.cli lsp` when that
 * Python can import Huddle. Nothing found: `undefined`, and `missingServerMessage` says what
 * was looked for and what to do (a `python3` that cannot import Huddle would only crash on
 * start, over and over, behind the language client's restart notifications).
 */
import * as path from 'node:path';

export interface ServerCommand {
  command: string;
  args: string[];
  /** Why this one: shown in the output channel and in errors. */
  source: 'setting' | 'workspace .venv' | 'PATH' | 'python';
}

export interface Lookup {
  /** Workspace folders (file system paths). */
  folders: readonly string[];
  /** A workspace may run its own .venv only when the user trusts it. */
  trusted: boolean;
  platform: NodeJS.Platform;
  /** True for an executable file. */
  isExecutable: (file: string) => boolean;
  /** The PATH environment variable. */
  pathEnv: string;
  /** True when this Python interpreter can import the `huddle` package. */
  importsHuddle: (python: string) => boolean;
}

export function resolveServerCommand(configured: readonly string[], lookup: Lookup): ServerCommand | undefined {
  const argv = configured.filter((part) => part.trim() !== '');
  if (argv.length > 0) {
    return { command: argv[0], args: argv.slice(1), source: 'setting' };
  }
  const windows = lookup.platform === 'win32';
  const p = windows ? path.win32 : path.posix;
  if (lookup.trusted) {
    for (const folder of lookup.folders) {
      const candidate = windows
        ? p.join(folder, '.venv', 'Scripts', 'huddle.exe')
        : p.join(folder, '.venv', 'bin', 'huddle');
      if (lookup.isExecutable(candidate)) {
        return { command: candidate, args: ['lsp'], source: 'workspace .venv' };
      }
    }
  }
  const onPath = which('huddle', lookup);
  if (onPath !== undefined) {
    return { command: onPath, args: ['lsp'], source: 'PATH' };
  }
  const python = which(windows ? 'python' : 'python3', lookup);
  if (python !== undefined && lookup.importsHuddle(python)) {
    return { command: python, args: ['-m', 'huddle.cli', 'lsp'], source: 'python' };
  }
  return undefined;
}

/** The one notification shown when no `huddle` is found: where it looked, and the fixes. */
export function missingServerMessage(lookup: Pick<Lookup, 'folders' | 'trusted' | 'platform'>): string {
  const windows = lookup.platform === 'win32';
  const venv = windows ? '.venv\\Scripts\\huddle.exe' : '.venv/bin/huddle';
  const where = [
    'the huddle.server.command setting',
    lookup.folders.length === 0
      ? undefined
      : lookup.trusted
        ? `the workspace's ${venv}`
        : `the workspace's ${venv} (not used: the workspace is not trusted)`,
    'huddle on PATH',
    `a ${windows ? 'python' : 'python3'} on PATH that can import huddle`,
  ].filter((w) => w !== undefined);
  return (
    `Huddle could not find its language server (looked in ${where.join(', ')}). ` +
    `Install it (pip install huddle) into the workspace's .venv or on PATH, or set huddle.server.command.`
  );
}

export function which(name: string, lookup: Lookup): string | undefined {
  const windows = lookup.platform === 'win32';
  const p = windows ? path.win32 : path.posix;
  const names = windows ? [`${name}.exe`, `${name}.cmd`, name] : [name];
  for (const dir of lookup.pathEnv.split(windows ? ';' : ':')) {
    if (!dir) continue;
    for (const candidate of names) {
      const file = p.join(dir, candidate);
      if (lookup.isExecutable(file)) return file;
    }
  }
  return undefined;
}
