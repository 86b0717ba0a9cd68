/*
 * client/client.h - the blocking h2tdb client: one TCP connection to `h2tdb serve`, request
 * ids assigned here, replies matched by id. Plain sockets, no event loop; one thread per
 * client object.
 *
 *     h2t_client *c;
 *     if (h2t_client_connect("127.0.0.1:7433", NULL, 5000, &c) < 0)
 *         return; // h2t_err_detail() says why
 *     h2t_msg req = {.type = H2T_MSG_HEALTH_REQ}, rep;
 *     if (h2t_client_call(c, &req, H2T_MSG_HEALTH, &rep) == 0) {
 *         printf("%s\n", rep.u.health.version);
 *         h2t_msg_free(&rep);
 *     }
 *     h2t_client_close(c);
 *
 * Errors the server sends back come out as their code (H2T_ENOTFOUND, H2T_EINVAL, ...) with
 * the server's message as h2t_err_detail().
 */
#ifndef H2T_CLIENT_CLIENT_H
#define H2T_CLIENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

typedef struct h2t_client h2t_client;

/* The address used when none is given: $H2T_SERVER, else "127.0.0.1:7433". Static/env. */
const char *h2t_client_default_addr(void);

/* Connect to addr ("HOST:PORT", "PORT", "[V6]:PORT"); with token_file (or $H2T_TOKEN_FILE
 * when token_file is NULL), authenticate first. timeout_ms bounds the connect and every
 * later read/write (0 = no limit). Errors: H2T_EINVAL (address), H2T_ENET (cannot connect:
 * detail names the address and says whether a server runs there), H2T_EIO (token file),
 * H2T_EAUTH (token refused), H2T_ENOMEM. */
int h2t_client_connect(const char *addr, const char *token_file, int timeout_ms, h2t_client **out);
/* NULL is a no-op. */
void h2t_client_close(h2t_client *c);

/* Send req (its id is assigned here) and wait for the reply with that id; the reply must be
 * of type want. *resp OWNED: h2t_msg_free. Errors: the server's code (detail = its message),
 * H2T_EPROTO (unexpected reply), H2T_ENET (connection lost), H2T_ETIMEDOUT. */
int h2t_client_call(h2t_client *c, h2t_msg *req, int want, h2t_msg *resp);
/* The two halves of a call, for watches (several replies to one request) and pipelining.
 * send assigns req's id. Errors: H2T_ENET (connection lost), H2T_ETIMEDOUT, H2T_EINVAL (a
 * message that does not encode), H2T_ENOMEM. */
int h2t_client_send(h2t_client *c, h2t_msg *req);
/* The next frame from the server (any id); *resp OWNED: h2t_msg_free. An Error frame is
 * returned as a message (type H2T_MSG_ERROR), not as a failure. Errors: H2T_ENET (connection
 * lost or closed), H2T_ETIMEDOUT, H2T_ETOOBIG (a frame over the limit), H2T_EPROTO (a payload
 * that does not decode), H2T_ENOMEM. */
int h2t_client_recv(h2t_client *c, h2t_msg *resp);
/* Raw bytes (tests: broken frames). Errors: H2T_ENET. */
int h2t_client_send_raw(h2t_client *c, const void *buf, size_t len);
/* The socket (tests). */
int h2t_client_fd(const h2t_client *c);

/* Watch a job: calls cb for every progress frame until the job is DONE/FAILED/CANCELLED
 * (the last cb call) and leaves that final state in *final (OWNED: h2t_msg_free) when
 * final is not NULL. cb may be NULL. Errors as h2t_client_call. */
typedef void (*h2t_client_job_cb)(void *ud, const h2t_msg_job *job);
int h2t_client_watch(h2t_client *c, uint64_t job, h2t_client_job_cb cb, void *ud, h2t_msg *final);

/* Classify n encoded images (the bytes of PNG or JPEG files; images[i] of lens[i] bytes,
 * BORROWED) with finished job `job`'s head on the server: the server runs the part of the
 * backbone the head needs and answers n x classes probabilities in
 * resp->u.classification (OWNED: h2t_msg_free). names (NULL or n strings) name the images in
 * the server's errors. Errors as h2t_client_call; the server's H2T_ETOOBIG names the cap a
 * request went over (images or bytes), H2T_ECORRUPT an image that does not decode,
 * H2T_ESTATE a job that is not finished or a model file that changed. */
int h2t_client_classify(h2t_client *c, uint64_t job, const uint8_t *const *images,
                        const size_t *lens, const char *const *names, size_t n, h2t_msg *resp);

#endif
