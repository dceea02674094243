;;; python_el_session.el --- drive a console through Emacs' python.el  -*- lexical-binding: t -*-

;; Run by tests/test_emacs.py: emacs --batch -l tests/python_el_session.el
;; Environment: PYEL_INTERPRETER, PYEL_ARGS (python-shell-interpreter and its
;; args), PYEL_PIPES ("1": process-connection-type nil), PYEL_NATIVE ("0": no
;; native completion), PYEL_DIR (a scratch directory).  Each step prints one line "RESULT <json [name, value]>" to
;; stderr; the test judges them.  Every wait has a timeout.

(require 'python)
(require 'json)
(require 'cl-lib)

(setq python-shell-interpreter (getenv "PYEL_INTERPRETER")
      python-shell-interpreter-args (getenv "PYEL_ARGS")
      process-connection-type (not (equal (getenv "PYEL_PIPES") "1"))
      python-shell-prompt-detect-failure-warning nil
      ;; PYEL_NATIVE "0": no native completion (on pipes python.el's probe, a Tab
      ;; and backspaces, reaches the next line, with CPython too)
      python-shell-completion-native-enable (not (equal (getenv "PYEL_NATIVE") "0"))
      warning-minimum-log-level :error)

(defvar pyel-dir (getenv "PYEL_DIR"))
(defvar pyel-proc nil)

(defun pyel-result (name value)
  (message "RESULT %s" (json-encode (list name value))))

(defun pyel-buffer-text ()
  (with-current-buffer (process-buffer pyel-proc)
    (buffer-substring-no-properties (point-min) (point-max))))

(defun pyel-wait (predicate timeout)
  "Accept output until PREDICATE holds or TIMEOUT seconds pass; PREDICATE's value."
  (let ((deadline (+ (float-time) timeout)) done)
    (while (and (not (setq done (funcall predicate)))
                (< (float-time) deadline)
                (process-live-p pyel-proc))
      (accept-process-output pyel-proc 0.05))
    done))

(defun pyel-mark ()
  (with-current-buffer (process-buffer pyel-proc) (point-max)))

(defun pyel-since (mark)
  (with-current-buffer (process-buffer pyel-proc)
    (buffer-substring-no-properties (min mark (point-max)) (point-max))))

(defun pyel-wait-prompt (mark &optional timeout)
  "Wait for a >>> prompt at the end of the output since MARK; that output."
  (pyel-wait (lambda () (string-match-p ">>> \\'" (pyel-since mark))) (or timeout 20))
  (pyel-since mark))

(defmacro pyel-step (name &rest body)
  `(pyel-result ,name (condition-case err (progn ,@body)
                        (error (format "ELISP-ERROR %S" err)))))

;; -- start: the first prompt, then python.el's setup codes and native completion setup
(let ((start (float-time)))
  (setq pyel-proc (run-python nil nil nil))
  (pyel-wait (lambda ()
               (with-current-buffer (process-buffer pyel-proc)
                 (and python-shell--first-prompt-received
                      (string-match-p ">>> \\'" (pyel-buffer-text)))))
             30)
  ;; the first-prompt hook (native completion setup) runs from the filter
  (accept-process-output pyel-proc 0.5)
  (pyel-result "start-seconds" (- (float-time) start)))
(pyel-step "start-buffer" (pyel-buffer-text))
(pyel-step "native-enabled"
  (with-current-buffer (process-buffer pyel-proc)
    (if python-shell-completion-native-enable "yes" "no")))

(pyel-step "no-output" (python-shell-send-string-no-output "print(6 * 7)" pyel-proc))

(pyel-step "send-string"
  (let ((mark (pyel-mark)))
    (python-shell-send-string "x = 5\n\nx * 2" pyel-proc)
    (pyel-wait-prompt mark)))

(pyel-step "big-string"
  (let ((mark (pyel-mark)))
    (python-shell-send-string
     (concat "y = 0\n" (apply #'concat (make-list 400 "y += 1\n")) "print('big', y)")
     pyel-proc)
    (pyel-wait-prompt mark)))

;; -- a file buffer: send the buffer, a region, a string; tracebacks name the file
(defvar pyel-file (expand-file-name "mod.py" pyel-dir))
(with-temp-file pyel-file
  (insert "import sys\n\n\ndef fail():\n    return 1 / 0\n\n\ndef two():\n\n    return 2\n\n\n"
          "print('buffer ran', two())\n\n\ndef g():\n    raise ValueError('region')\n\n\ng()\n"))
(defvar pyel-file-buffer (find-file-noselect pyel-file))
(with-current-buffer pyel-file-buffer (python-mode))

(pyel-step "send-buffer"
  (let ((mark (pyel-mark)))
    (with-current-buffer pyel-file-buffer
      (python-shell-send-buffer))
    (pyel-wait-prompt mark)))

(pyel-step "send-region"
  (let ((mark (pyel-mark)))
    (with-current-buffer pyel-file-buffer
      (goto-char (point-min))
      (search-forward "def g")
      (python-shell-send-region (line-beginning-position) (point-max)))
    (pyel-wait-prompt mark)))

(pyel-step "string-traceback"
  (let ((mark (pyel-mark)))
    (with-current-buffer pyel-file-buffer
      (python-shell-send-string "fail()"))
    (pyel-wait-prompt mark)))

;; -- a block typed in the shell buffer (no auto-indent in a dumb terminal, as 3.13)
(pyel-step "typed-block"
  (let ((mark (pyel-mark)))
    (dolist (line '("for i in range(2):\n" "    print(i)\n" "\n"))
      (comint-send-string pyel-proc line)
      (pyel-wait (lambda () (string-match-p "\\(>>>\\|\\.\\.\\.\\) \\'" (pyel-since mark))) 20))
    (pyel-wait-prompt mark)))

;; -- input()
(pyel-step "input"
  (let ((mark (pyel-mark)))
    (python-shell-send-string "name = input('who? ')" pyel-proc)
    (pyel-wait (lambda () (string-match-p "who\\? \\'" (pyel-since mark))) 20)
    (comint-send-string pyel-proc "Bob\n")
    (pyel-wait-prompt mark)
    (python-shell-send-string-no-output "print('name is', name)" pyel-proc)))

;; -- C-c C-c while code runs
(pyel-step "interrupt"
  (let ((mark (pyel-mark)) (t0 nil))
    (python-shell-send-string "import time; time.sleep(30)" pyel-proc)
    (accept-process-output pyel-proc 1.0)
    (setq t0 (float-time))
    (with-current-buffer (process-buffer pyel-proc) (comint-interrupt-subjob))
    (let ((text (pyel-wait-prompt mark 15)))
      (format "%.1f s: %s" (- (float-time) t0) text))))
(pyel-step "alive" (python-shell-send-string-no-output "print('alive')" pyel-proc))

;; -- eldoc and completion
(pyel-step "eldoc" (python-eldoc--get-doc-at-point "divmod" pyel-proc))
(pyel-step "completion"
  (mapconcat #'identity (python-shell-completion-get-completions pyel-proc "pri") " "))
(pyel-step "native-completion"
  (let ((python-shell-completion-native-output-timeout 5))
    (unless (with-current-buffer (process-buffer pyel-proc) python-shell-completion-native-enable)
      (error "native completion is off"))
    (mapconcat #'identity
               (or (python-shell-completion-native-get-completions pyel-proc "divm") '("NONE"))
               " ")))
(pyel-step "after-completion" (python-shell-send-string-no-output "print('still', 1)" pyel-proc))

(pyel-step "buffer" (pyel-buffer-text))

;; -- the end: exit() ends the console (and its kernel)
(pyel-step "exit"
  (progn
    (comint-send-string pyel-proc "exit()\n")
    (pyel-wait (lambda () (not (process-live-p pyel-proc))) 20)
    (format "%s %s" (process-status pyel-proc) (process-exit-status pyel-proc))))
(when (process-live-p pyel-proc) (kill-process pyel-proc))
