/* tests/srv_thread.c - see srv_thread.h. */
#include "tests/srv_thread.h"

#include "common/err.h"
#include "tests/test.h"

static void *srv_main(void *arg)
{
    test_srv *t = arg;
    h2t_srv_run(t->srv);
    return NULL;
}

void test_srv_start(test_srv *t, h2t_srv_config *cfg)
{
    cfg->listen = "127.0.0.1:0";
    cfg->handle_signals = 0;
    ASSERT_OK(h2t_srv_create(cfg, t->st, &t->srv));
    snprintf(t->addr, sizeof(t->addr), "127.0.0.1:%d", h2t_srv_port(t->srv));
    ASSERT_EQ(pthread_create(&t->th, NULL, srv_main, t), 0);
}

void test_srv_finish(test_srv *t)
{
    h2t_srv_stop(t->srv);
    pthread_join(t->th, NULL);
    h2t_srv_destroy(t->srv);
    h2t_store_close(t->st);
}
