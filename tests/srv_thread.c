/* tests/srv_thread.c - see srv_thread.h. */
#include "tests/srv_thread.h"

#include "common/err.h"
#include "tests/fixture.h"
#include "tests/test.h"

static void *srv_main(void *arg)
{
    h2t_srv_run(arg);
    return NULL;
}

void test_srv_start(test_srv *t, h2t_srv_config *cfg)
{
    ASSERT_OK(fixture_srv_start(cfg, t->st, srv_main, &t->th, &t->srv, t->addr, sizeof(t->addr)));
}

void test_srv_finish(test_srv *t)
{
    h2t_srv_stop(t->srv);
    pthread_join(t->th, NULL);
    h2t_srv_destroy(t->srv);
    h2t_store_close(t->st);
}
