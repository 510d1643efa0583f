/**
 * Which command starts `huddle lsp`: the `huddle.server.command` setting, else the workspace's
 * own virtual environment, else `huddle` on PATH, else `python -m huddle.cli lsp`.
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
}

export function resolveServerCommand(configured: readonly string[], lookup: Lookup): ServerCommand {
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
  const python = which(windows ? 'python' : 'python3', lookup) ?? (windows ? 'python' : 'python3');
  return { command: python, args: ['-m', 'huddle.cli', 'lsp'], source: 'python' };
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
