/**
 * Server-initiated work-done progress (summaries) as VS Code's progress notification, with its
 * Cancel button. vscode-languageclient shows such progress only as a status bar spinner, which
 * cannot be cancelled; this feature is registered after the built-in ones, so its
 * `window/workDoneProgress/create` handler is the one in force on every (re)start.
 */
import * as vscode from 'vscode';
import {
  type ClientCapabilities,
  type FeatureState,
  type LanguageClient,
  type StaticFeature,
  WorkDoneProgress,
  type WorkDoneProgressBegin,
  WorkDoneProgressCancelNotification,
  WorkDoneProgressCreateRequest,
  type WorkDoneProgressReport,
} from 'vscode-languageclient/node';

import { ProgressMeter } from '../core/progress';

export type ProgressListener = (token: string, message: string | undefined, percentage: number | undefined) => void;

export class NotificationProgressFeature implements StaticFeature {
  private readonly active = new Set<vscode.Disposable>();

  constructor(
    private readonly client: LanguageClient,
    private readonly listener: ProgressListener,
  ) {}

  fillClientCapabilities(capabilities: ClientCapabilities): void {
    (capabilities.window ??= {}).workDoneProgress = true;
  }

  initialize(): void {
    this.client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
      this.track(String(token), token);
    });
  }

  getState(): FeatureState {
    return { kind: 'static' };
  }

  clear(): void {
    for (const d of this.active) d.dispose();
    this.active.clear();
  }

  private track(key: string, token: string | number): void {
    let done: (() => void) | undefined;
    let ended = false;
    let progress: vscode.Progress<{ message?: string; increment?: number }> | undefined;
    const meter = new ProgressMeter();
    const report = (value: WorkDoneProgressBegin | WorkDoneProgressReport): void => {
      this.listener(key, value.message, value.percentage);
      progress?.report({ message: value.message, increment: meter.increment(value.percentage) });
    };
    const listening = this.client.onProgress(WorkDoneProgress.type, token, (value) => {
      if (value.kind === 'begin') {
        void vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: value.title, cancellable: value.cancellable ?? false },
          (p, cancel) =>
            new Promise<void>((resolve) => {
              if (ended) return resolve();
              progress = p;
              done = resolve;
              cancel.onCancellationRequested(() => {
                void this.client.sendNotification(WorkDoneProgressCancelNotification.type, { token });
              });
              report(value);
            }),
        );
      } else if (value.kind === 'report') {
        report(value);
      } else {
        entry.dispose();
      }
    });
    const entry = new vscode.Disposable(() => {
      ended = true;
      listening.dispose();
      done?.();
      this.active.delete(entry);
    });
    this.active.add(entry);
  }
}
