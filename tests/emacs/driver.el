;;; driver.el --- what tests/test_emacs.py asks the Emacs daemon to do  -*- lexical-binding: t; -*-

;; Keystrokes go through the command loop (`unread-command-events'), as a user's would: each
;; one ends Emacs's idleness, so eglot's `eglot-send-changes-idle-time' applies as it does
;; for a person typing. Answers are JSON strings for the test to parse.

(require 'cl-lib)
(require 'json)
(require 'huddle)

(defvar huddle-test-requests 0 "workspace/applyEdit requests received.")
(defvar huddle-test-typed 0 "Keystrokes typed by `huddle-test-type'.")
(defvar huddle-test-timer nil)
(defvar huddle-test-flushes 0 "Changes sent early after a stale edit (`huddle--flush-changes').")
(defvar huddle-test-didchanges 0 "textDocument/didChange notifications eglot sent.")

(advice-add 'huddle--flush-changes :before (lambda (&rest _) (cl-incf huddle-test-flushes)))
(advice-add 'eglot--signal-textDocument/didChange :before
            (lambda (&rest _) (when eglot--recent-changes (cl-incf huddle-test-didchanges))))

(advice-add 'eglot-handle-request :before
            (lambda (_server method &rest _)
              (when (eq method 'workspace/applyEdit) (cl-incf huddle-test-requests))))

(defun huddle-test-buffer (file)
  (or (get-file-buffer file) (error "no buffer for %s" file)))

(defun huddle-test-open (file)
  "Visit FILE, show it in the selected window and start Huddle for it."
  (let ((buffer (find-file-noselect file)))
    (set-window-buffer (selected-window) buffer)
    (set-buffer buffer)
    ;; eglot waits `eglot-sync-connect' (3 s) for the server and then goes on connecting in
    ;; the background: on a loaded machine `huddle lsp' takes longer to start (it failed 1 run
    ;; in 8 beside the suite). Wait for the connection itself, as long as the caller allows.
    (let ((eglot-sync-connect 25))  ; the callers give up after 30 s
      (huddle-start))
    (json-encode (list :managed (if (eglot-managed-p) t :json-false)))))

(defun huddle-test-type (file position text rate)
  "Type TEXT into FILE at POSITION (1-based), RATE characters a second, as keystrokes."
  (let ((buffer (huddle-test-buffer file))
        (keys (string-to-list text)))
    (set-window-buffer (selected-window) buffer)
    (set-buffer buffer)
    (goto-char position)
    (setq huddle-test-typed 0)
    (setq huddle-test-timer
          (run-with-timer
           0 (/ 1.0 rate)
           (lambda ()
             (if (null keys)
                 (cancel-timer huddle-test-timer)
               (setq unread-command-events (append unread-command-events (list (pop keys))))
               (cl-incf huddle-test-typed)))))
    t))

(defun huddle-test-state (file)
  "Everything the test checks, as JSON."
  (let ((buffer (get-file-buffer file)))
    (json-encode
     (list :text (if buffer (with-current-buffer buffer
                              (buffer-substring-no-properties (point-min) (point-max)))
                   :json-false)
           :typed huddle-test-typed
           :requests huddle-test-requests
           :applied huddle-applied-edits
           :flushes huddle-test-flushes
           :didchanges huddle-test-didchanges
           :messages (with-current-buffer (messages-buffer)
                       (count-lines (point-min) (point-max)))
           :mode_line (if buffer (with-current-buffer buffer (huddle-mode-line)) "")
           :peers (if buffer
                      (with-current-buffer buffer
                        (vconcat
                         (mapcar (lambda (o)
                                   (list :name (overlay-get o 'huddle-peer)
                                         :point (overlay-start o)))
                                 huddle--overlays)))
                    [])
           :minibuffer (if (> (minibuffer-depth) 0) t :json-false)))))

(defun huddle-test-messages ()
  (with-current-buffer (messages-buffer) (buffer-string)))
