/*
 * tests/srv_thread.h - a real h2tdb server in a thread of the test, on an ephemeral loopback
 * port, for the service tests (test_server*.c).
 *
 *     test_srv t = {0};
 *     t.st = a_fixture_store();            // OWNED by t from here on (tests/fixture.h)
 *     h2t_srv_config cfg;
 *     h2t_srv_config_default(&cfg);
 *     test_srv_start(&t, &cfg);            // t.addr = "127.0.0.1:PORT"
 *     ... h2t_client_connect(t.addr, ...) ...
 *     test_srv_finish(&t);                 // stop, join, destroy, close the store
 */
#ifndef H2T_TESTS_SRV_THREAD_H
#define H2T_TESTS_SRV_THREAD_H

#include <pthread.h>

#include "server/server.h"
#include "storage/store.h"

typedef struct test_srv {
    h2t_store *st; /* set by the caller before the start; closed by test_srv_finish */
    h2t_srv *srv;
    pthread_t th;
    char addr[64];
} test_srv;

/* fixture_srv_start (tests/fixture.h): cfg->listen becomes 127.0.0.1:0 and signal handling
 * off; the server runs on a new thread. A failure fails the test. */
void test_srv_start(test_srv *t, h2t_srv_config *cfg);
void test_srv_finish(test_srv *t);

#endif
