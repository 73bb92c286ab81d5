;;; An echo server on the wsServer API from Guile 3, through its dynamic FFI
;;; ((system foreign)): the library is loaded at run time, the events are Scheme
;;; procedures made into C function pointers, the message is copied into a Scheme
;;; bytevector and sent back from it.
;;;
;;;   WSREACTOR_LIB=target/release/libwsreactor_c.so guile examples/echo.scm PORT
;;;
;;; The loop runs on this thread (thread_loop 0): the callbacks run in Guile's own
;;; thread, as Guile wants.

(use-modules (system foreign) (rnrs bytevectors) (ice-9 format))

(define lib (dynamic-link (or (getenv "WSREACTOR_LIB") "libwsreactor_c")))
(define (c-fn ret name args) (pointer->procedure ret (dynamic-func name lib) args))

(define ws-socket        (c-fn int "ws_socket" (list '* uint16 int uint32)))
(define ws-sendframe     (c-fn int "ws_sendframe" (list '* '* uint64 int)))
(define ws-getaddress    (c-fn '* "ws_getaddress" (list '*)))
(define ws-get-state     (c-fn int "ws_get_state" (list '*)))

(define WS_STATE_OPEN 1)
(define verbose (getenv "ECHO_VERBOSE"))

(define (onopen client)
  (unless (= (ws-get-state client) WS_STATE_OPEN)
    (format (current-error-port) "echo.scm: ERROR state ~a in onopen~%" (ws-get-state client)))
  (when verbose
    (format #t "open ~a~%" (pointer->string (ws-getaddress client)))))

(define (onclose client)
  (when verbose
    (format #t "close ~a~%" (pointer->string (ws-getaddress client)))))

(define (onmessage client msg size type)
  ;; A Scheme copy of the whole message, then back from it.
  (let ((bv (if (zero? size) (make-bytevector 0) (bytevector-copy (pointer->bytevector msg size)))))
    (ws-sendframe client (bytevector->pointer bv) size type)))

;; Kept in top-level variables: the C side holds only their addresses, so these must
;; stay reachable for the collector as long as the server runs.
(define onopen-ptr    (procedure->pointer void onopen (list '*)))
(define onclose-ptr   (procedure->pointer void onclose (list '*)))
(define onmessage-ptr (procedure->pointer void onmessage (list '* '* uint64 int)))
(define events (make-c-struct (list '* '* '*) (list onopen-ptr onclose-ptr onmessage-ptr)))

(define port (string->number (car (last-pair (command-line)))))
(format (current-error-port) "echo.scm: serving port ~a~%" port)
(ws-socket events port 0 1000)            ; blocks
(format (current-error-port) "echo.scm: ERROR ws_socket returned~%")
(exit 1)
