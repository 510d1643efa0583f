;;; editor_fuzz.el --- the Emacs of the real-editor fuzzer (tests/editor_fuzz.py)  -*- lexical-binding: t; -*-

;; The fuzzer reads the buffer (`editor-fuzz-view'), picks an edit on what it read and sends it
;; back with the buffer's `buffer-chars-modified-tick': `editor-fuzz-apply' edits the buffer
;; (goto-char, delete-region, insert: through the buffer, as a command would) only if the tick
;; is still the same, so each edit is made on exactly the text it was chosen on. Texts travel
;; as base64 of UTF-8, so nothing depends on emacsclient's coding systems.

(require 'huddle)

(defun editor-fuzz--encode (string)
  (base64-encode-string (encode-coding-string string 'utf-8 t) t))

(defun editor-fuzz--view ()
  (format "%d %s" (buffer-chars-modified-tick)
          (editor-fuzz--encode (buffer-substring-no-properties (point-min) (point-max)))))

(defun editor-fuzz-view (file)
  "\"TICK BASE64\": the buffer of FILE and its tick."
  (with-current-buffer (or (get-file-buffer file) (error "no buffer for %s" file))
    (editor-fuzz--view)))

(defun editor-fuzz-apply (file tick start end text)
  "Replace [START, END) (0-based characters) by TEXT (base64) if FILE's buffer is at TICK.
The new view, or \"stale\"."
  (with-current-buffer (or (get-file-buffer file) (error "no buffer for %s" file))
    (if (/= tick (buffer-chars-modified-tick))
        "stale"
      (goto-char (1+ start))
      (delete-region (1+ start) (1+ end))
      (insert (decode-coding-string (base64-decode-string text) 'utf-8))
      (editor-fuzz--view))))

(defun editor-fuzz-server-status (file)
  "huddle lsp's `huddle.status' for FILE's server and the applyEdit requests eglot got, as
\"REPAIRS REQUESTS\"."
  (with-current-buffer (or (get-file-buffer file) (error "no buffer for %s" file))
    (let ((status (jsonrpc-request (eglot-current-server) :workspace/executeCommand
                                   (list :command "huddle.status" :arguments []))))
      (format "%s %d" (plist-get status :repairs) huddle-test-requests))))

(provide 'editor_fuzz)
;;; editor_fuzz.el ends here
