;;; huddle.el --- Huddle for Emacs, on top of eglot  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: tools, convenience

;;; Commentary:

;; A thin client (the server does the work): `huddle lsp' is registered with eglot as the
;; server for the modes in `huddle-modes', and this file adds what eglot does not do:
;;
;; - teammates' edits are applied without a prompt and without a line in *Messages* per edit
;;   (eglot 1.9 asks "Server wants to edit ... Proceed?" and logs every applied edit);
;; - `huddle/status' in the mode line: "Huddle ● acme/webapp +2" (state, room, teammates);
;; - `huddle/peers': teammates' cursors as overlays in their colour with their name;
;; - your cursor goes to the server (`huddle/cursor'), so teammates see you;
;; - `huddle-join' (an invite link), `huddle-leave', `huddle-share', `huddle-follow',
;;   `huddle-unfollow', `huddle-status', `huddle-summarize-file', `huddle-catch-up' (streamed
;;   into the *huddle summary* buffer).
;;
;; Setup (Debian 12: Emacs 28.2 + the elpa-eglot package; Emacs 29+ has eglot built in):
;;
;;   (add-to-list 'load-path "/path/to/huddle/editor-clients/emacs")
;;   (require 'huddle)
;;   (setq huddle-user "ann")            ; optional: hub, room, token, user, color
;;   (add-hook 'prog-mode-hook #'eglot-ensure)   ; or M-x huddle-start in a buffer

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'subr-x)

(defgroup huddle nil
  "Real-time collaborative editing with Huddle."
  :group 'tools
  :prefix "huddle-")

(defcustom huddle-command '("huddle" "lsp")
  "The command that starts Huddle's language server."
  :type '(repeat string))

(defcustom huddle-modes '(prog-mode text-mode conf-mode)
  "Major modes (and the modes derived from them) whose buffers Huddle shares."
  :type '(repeat symbol))

(defcustom huddle-hub nil
  "Hub URL (ws://host:8765), or a list of a cluster's nodes, tried in turn.
nil: the environment, huddle.toml or solo."
  :type '(choice (const nil) string (repeat string)))
(defcustom huddle-room nil "Room name; nil: the environment, huddle.toml or the folder's name."
  :type '(choice (const nil) string))
(defcustom huddle-token nil "Access token for the hub." :type '(choice (const nil) string))
(defcustom huddle-user nil "Your name in the room." :type '(choice (const nil) string))
(defcustom huddle-color nil "Your colour (#rrggbb)." :type '(choice (const nil) string))

(defcustom huddle-cursor-idle-time 0.2
  "Seconds without commands before your cursor is sent to teammates."
  :type 'number)

(defcustom huddle-share-role "edit"
  "Role of the invites `huddle-share' makes: \"edit\" or \"read\"."
  :type '(choice (const "edit") (const "read")))

(defvar huddle--join nil
  "Settings from the last `huddle-join' (a plist), over the customisations.")

(defvar huddle-applied-edits 0
  "Teammates' edits applied (one per `workspace/applyEdit' request), for the curious.")

;;; The server class and its registration

(defclass huddle-eglot-server (eglot-lsp-server)
  ((status :initform nil :accessor huddle--status)
   (peers :initform nil :accessor huddle--peers))
  "A `huddle lsp' connection.")

(defun huddle--token-user (token)
  "The `sub' claim of the JWT TOKEN (unverified: the hub verifies), or nil."
  (when-let* ((parts (and (stringp token) (split-string token "\\.")))
              (payload (nth 1 parts)))
    (ignore-errors
      (let* ((b64 (replace-regexp-in-string "_" "/" (replace-regexp-in-string "-" "+" payload)))
             (padded (concat b64 (make-string (% (- 4 (% (length b64) 4)) 4) ?=)))
             (claims (json-parse-string (decode-coding-string (base64-decode-string padded) 'utf-8)
                                        :object-type 'plist)))
        (plist-get claims :sub)))))

(defun huddle--initialization-options (_server)
  "The `initializationOptions' for `huddle lsp': the customisations, then `huddle-join'."
  ;; A list goes out as a JSON array only as a vector (a list would be read as an object).
  (let ((options (list :hub (if (consp huddle-hub) (vconcat huddle-hub) huddle-hub)
                       :room huddle-room :token huddle-token
                       :user huddle-user :color huddle-color)))
    (cl-loop for (key value) on huddle--join by #'cddr
             do (setq options (plist-put options key value)))
    (unless (plist-get options :user)
      (setq options (plist-put options :user (huddle--token-user (plist-get options :token)))))
    ;; Only the settings given: `huddle lsp' falls back field by field.
    (or (cl-loop for (key value) on options by #'cddr
                 when value append (list key value))
        eglot--{})))

(defun huddle--contact ()
  "The `eglot-server-programs' contact for Huddle."
  `(huddle-eglot-server ,@huddle-command
                        :initializationOptions huddle--initialization-options))

(defun huddle--register ()
  "Make `huddle lsp' the server of `huddle-modes' (first, before other servers)."
  (setq eglot-server-programs
        (cons (cons huddle-modes (huddle--contact))
              (cl-remove-if (lambda (entry) (eq (car-safe (cdr entry)) 'huddle-eglot-server))
                            eglot-server-programs))))

(huddle--register)

;;;###autoload
(defun huddle-start ()
  "Share the current buffer: start (or attach to) `huddle lsp' for its project."
  (interactive)
  ;; What `eglot-ensure' does after the command, at once (a buffer of a mode outside
  ;; `huddle-modes' too).
  (unless (eglot-managed-p)
    (let ((eglot-server-programs (cons (cons major-mode (huddle--contact)) eglot-server-programs)))
      (apply #'eglot--connect (eglot--guess-contact)))))

(defun huddle--server (&optional noerror)
  "The Huddle server of the current buffer."
  (let ((server (eglot-current-server)))
    (cond ((cl-typep server 'huddle-eglot-server) server)
          (noerror nil)
          (t (user-error "Huddle is not running for this buffer (M-x huddle-start)")))))

;;; Teammates' edits: no prompt, no *Messages* line per edit

(defun huddle--flush-changes (server)
  "Send SERVER the changes eglot holds back (it waits for `eglot-send-changes-idle-time')."
  (dolist (buffer (eglot--managed-buffers server))
    (with-current-buffer buffer
      (when eglot--recent-changes
        (eglot--signal-textDocument/didChange)))))

(cl-defmethod eglot-handle-request
  ((server huddle-eglot-server) (_method (eql workspace/applyEdit)) &key _label edit)
  "Apply a teammate's edit quietly: eglot would ask first and log each one."
  ;; Without a confirmation. `message-log-max' nil keeps the progress reporter and "Edit
  ;; successful!" out of *Messages*, `inhibit-message' out of the echo area.
  ;; Either way the server waits for our next change before it sends more: the echo of this
  ;; edit, or (a stale version) the typing not yet reported. eglot sends changes only after
  ;; half a second without typing, so while the user types, never: send them just after this
  ;; answer, so that teammates' edits land while the user types rather than when they pause.
  (run-at-time 0 nil (lambda ()
                       (when (jsonrpc-running-p server) (huddle--flush-changes server))))
  (let ((inhibit-message t)
        (message-log-max nil))
    (eglot--apply-workspace-edit edit nil))
  (cl-incf huddle-applied-edits)
  `(:applied t))

;;; Status in the mode line

(defconst huddle--icons
  '(("connected" . "●") ("read-only" . "●") ("reconnecting" . "◌") ("offline" . "○")
    ("rejected" . "✕")))

(cl-defmethod eglot-handle-notification
  ((server huddle-eglot-server) (_method (eql huddle/status)) &rest status)
  (setf (huddle--status server) status)
  (force-mode-line-update t))

(defun huddle-mode-line ()
  "\"Huddle ● acme/webapp +2\" for the current buffer, or \"\" outside Huddle."
  (let* ((server (huddle--server t))
         (status (and server (huddle--status server))))
    (cond ((not server) "")
          ((not status) " Huddle …")
          (t (let* ((state (plist-get status :state))
                    (room (if (eq (plist-get status :solo) t) "solo" (or (plist-get status :room) "")))
                    (peers (length (huddle--peer-names server))))
               (concat " Huddle " (or (cdr (assoc state huddle--icons)) "?") " " room
                       (unless (equal state "connected") (format " (%s)" state))
                       (when (> peers 0) (format " +%d" peers))))))))

(defvar huddle--mode-line '(:eval (huddle-mode-line)))
(put 'huddle--mode-line 'risky-local-variable t)
(unless (memq 'huddle--mode-line mode-line-misc-info)
  (push 'huddle--mode-line mode-line-misc-info))

;;; Teammates' cursors

(defvar-local huddle--overlays nil "Overlays of teammates' cursors in this buffer.")

(defun huddle--peer-names (server)
  "Names of the teammates SERVER last reported (its status's list before any peers)."
  (let ((peers (huddle--peers server)))
    (if peers
        (delete-dups (mapcar (lambda (p) (plist-get p :name)) peers))
      (append (plist-get (huddle--status server) :peers) nil))))

(defun huddle--position-to-point (position)
  "The point of the LSP POSITION (UTF-16 code units, as eglot 1.9 speaks).
A teammate's position is computed on the text huddle lsp last heard of, so it may fall
inside a character the user has typed since (between the halves of 😀): that character's
start then; past the end of its line, the line's end; past the last line, the buffer's end.
Not `eglot--lsp-position-to-point': in eglot 1.9 it never returns for a position inside a
character, and Emacs stops answering."
  (save-excursion
    (save-restriction
      (widen)
      (goto-char (point-min))
      (forward-line (plist-get position :line))
      (let ((units (plist-get position :character))
            (end (line-end-position)))
        (unless (wholenump units) (setq units 0))
        (while (and (< (point) end)
                    (let ((width (if (> (char-after) #xffff) 2 1)))
                      (when (<= width units)
                        (setq units (- units width))
                        (forward-char 1)
                        t))))
        (point)))))

(defun huddle--draw-peers (server)
  "Redraw teammates' cursors in the buffers SERVER manages."
  (dolist (buffer (eglot--managed-buffers server))
    (with-current-buffer buffer
      (mapc #'delete-overlay huddle--overlays)
      (setq huddle--overlays nil)
      (let ((uri (eglot--path-to-uri (buffer-file-name))))
        (dolist (peer (huddle--peers server))
          (let ((position (plist-get peer :position)))
            (when (and position (equal (plist-get peer :uri) uri))
              (let* ((point (huddle--position-to-point position))
                     (color (or (plist-get peer :color) "#888888"))
                     (name (or (plist-get peer :name) "?"))
                     (overlay (make-overlay point point nil t nil)))
                (overlay-put overlay 'huddle-peer name)
                (overlay-put overlay 'before-string
                             (propertize (concat "▏" name) 'face
                                         `(:foreground "white" :background ,color)))
                (push overlay huddle--overlays)))))))))

(cl-defmethod eglot-handle-notification
  ((server huddle-eglot-server) (_method (eql huddle/peers)) &key peers &allow-other-keys)
  (setf (huddle--peers server) (append peers nil))
  (huddle--draw-peers server)
  (force-mode-line-update t))

;;; Your cursor, for teammates

(defvar-local huddle--cursor-sent nil)
(defvar huddle--cursor-timer nil)

(defun huddle--send-cursor ()
  (setq huddle--cursor-timer nil)
  (when-let ((server (huddle--server t)))
    (let ((where (list (point) (buffer-file-name))))
      (unless (equal where huddle--cursor-sent)
        (setq huddle--cursor-sent where)
        (jsonrpc-notify server :huddle/cursor
                        `(:uri ,(eglot--path-to-uri (buffer-file-name))
                          :position ,(eglot--pos-to-lsp-position)))))))

(defun huddle--post-command ()
  (when (and (huddle--server t) (not huddle--cursor-timer))
    (setq huddle--cursor-timer
          (run-with-idle-timer huddle-cursor-idle-time nil
                               (let ((buffer (current-buffer)))
                                 (lambda ()
                                   (when (buffer-live-p buffer)
                                     (with-current-buffer buffer (huddle--send-cursor)))))))))

(defun huddle--managed ()
  (if (and (eglot-managed-p) (huddle--server t))
      (add-hook 'post-command-hook #'huddle--post-command nil t)
    (remove-hook 'post-command-hook #'huddle--post-command t)
    (mapc #'delete-overlay huddle--overlays)
    (setq huddle--overlays nil)))

(add-hook 'eglot-managed-mode-hook #'huddle--managed)

;;; Commands

(defun huddle--execute (command &rest arguments)
  "Run the server's COMMAND with ARGUMENTS and return its result."
  (jsonrpc-request (huddle--server) :workspace/executeCommand
                   `(:command ,command :arguments ,(vconcat arguments))))

(defun huddle-parse-link (link)
  "(:hub :room :token) from an invite LINK (ws://host:8765/acme/webapp?token=...)."
  (let ((link (string-trim link)))
    (unless (string-match "\\`\\(wss?\\)://\\([^/?#]+\\)\\([^?#]*\\)\\??\\([^#]*\\)" link)
      (user-error "An invite link starts with ws:// or wss://"))
    (let ((hub (concat (match-string 1 link) "://" (match-string 2 link)))
          (room (url-unhex-string
                 (string-trim (match-string 3 link) "/+" "/+")))
          (query (match-string 4 link))
          token)
      (when (string-empty-p room)
        (user-error "The link names no room (ws://host:port/ROOM?token=...)"))
      (dolist (pair (split-string query "&" t))
        (when (string-prefix-p "token=" pair)
          (setq token (url-unhex-string (substring pair 6)))))
      (unless (and token (not (string-empty-p token)))
        (user-error "The link has no ?token="))
      (list :hub hub :room room :token token))))

;;;###autoload
(defun huddle-join (link)
  "Join the room of the invite LINK (reconnects the current buffer's project)."
  (interactive "sInvite link: ")
  (let* ((parsed (huddle-parse-link link))
         (user (huddle--token-user (plist-get parsed :token))))
    (setq huddle--join (if user (plist-put parsed :user user) parsed))
    (let ((server (huddle--server t)))
      (if server (eglot-reconnect server) (huddle-start)))
    (message "huddle: joining %s on %s" (plist-get parsed :room) (plist-get parsed :hub))))

(defun huddle-leave ()
  "Leave the room: stop `huddle lsp' for this project."
  (interactive)
  (setq huddle--join nil)
  (eglot-shutdown (huddle--server)))

(defun huddle-share (&optional user)
  "Copy an invite link (for USER, or a guest) to the kill ring."
  (interactive (list (let ((name (read-string "Invite for (empty: a guest): ")))
                       (unless (string-empty-p name) name))))
  (let* ((options `(:role ,huddle-share-role ,@(and user (list :user user))))
         (result (huddle--execute "huddle.invite" options))
         (url (plist-get result :url)))
    (kill-new url)
    (message "huddle: invite for %s (%s) copied: %s" (or user "guest") (plist-get result :role) url)
    url))

(defun huddle-follow (name)
  "Follow the teammate NAME: show the files they move to."
  (interactive (list (completing-read "Follow: " (huddle--peer-names (huddle--server)) nil t)))
  (huddle--execute "huddle.follow" name)
  (message "huddle: following %s (M-x huddle-unfollow to stop)" name))

(defun huddle-unfollow ()
  "Stop following."
  (interactive)
  (huddle--execute "huddle.unfollow")
  (message "huddle: not following anyone"))

(defun huddle-status ()
  "Connection, room and teammates."
  (interactive)
  (let ((status (huddle--execute "huddle.status")))
    (message "huddle: %s in %s as %s; teammates: %s; repairs: %s"
             (plist-get status :state) (plist-get status :room) (plist-get status :user)
             (mapconcat #'identity (append (plist-get status :peers) nil) ", ")
             (plist-get status :repairs))))

;;; Summaries, streamed into *huddle summary*

(defconst huddle-summary-buffer "*huddle summary*")
(defvar huddle--summary nil "(TITLE . TOKEN) of the running summary.")

(defun huddle--summary-show (text state)
  (with-current-buffer (get-buffer-create huddle-summary-buffer)
    (let ((inhibit-read-only t))
      (erase-buffer)
      (insert "# " (car huddle--summary) "\n\n" text))
    (setq-local huddle-summary-state state)
    (setq buffer-read-only t)
    (display-buffer (current-buffer))))

(cl-defmethod eglot-handle-notification
  ((_server huddle-eglot-server) (_method (eql huddle/summaryPartial)) &key token text
   &allow-other-keys)
  (when huddle--summary
    (unless (cdr huddle--summary) (setcdr huddle--summary token)) ; the first names it
    (when (and (equal token (cdr huddle--summary)) (stringp text))
      (huddle--summary-show text 'streaming))))

(defun huddle--summarize (title command &rest arguments)
  (setq huddle--summary (cons title nil))
  (huddle--summary-show "…" 'waiting)
  (jsonrpc-async-request
   (huddle--server) :workspace/executeCommand
   `(:command ,command :arguments ,(vconcat arguments))
   :success-fn (lambda (result)
                 (huddle--summary-show (or (plist-get result :markdown) "") 'done))
   :error-fn (lambda (err)
               (huddle--summary-show (format "Failed: %s" (plist-get err :message)) 'failed))
   :timeout-fn (lambda () (huddle--summary-show "Timed out" 'failed))
   :timeout 300))

(defun huddle-summarize-file ()
  "Summarise the current file."
  (interactive)
  (huddle--summarize (format "Summary of %s" (file-name-nondirectory (buffer-file-name)))
                     "huddle.summarizeFile" (eglot--path-to-uri (buffer-file-name))))

(defun huddle-catch-up ()
  "What teammates changed since you last looked."
  (interactive)
  (huddle--summarize "Catching up" "huddle.catchUp"))

(provide 'huddle)
;;; huddle.el ends here
