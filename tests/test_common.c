#include "common/err.h"
#include "common/util.h"
#include "tests/test.h"

TEST(common_crc32c_known_vector)
{
    /* RFC 3720 B.4: 32 bytes of zeros -> 0x8a9136aa; "123456789" -> 0xe3069283 */
    uint8_t z[32] = {0};
    ASSERT_EQ(h2t_crc32c(0, z, 32), 0x8a9136aau);
    ASSERT_EQ(h2t_crc32c(0, "123456789", 9), 0xe3069283u);
    /* chaining equals one call */
    ASSERT_EQ(h2t_crc32c(h2t_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

TEST(common_sha256_known_vector)
{
    uint8_t d[32];
    char hex[65];
    h2t_sha256 s;
    h2t_sha256_init(&s);
    h2t_sha256_update(&s, "abc", 3);
    h2t_sha256_final(&s, d);
    h2t_hex(d, 32, hex);
    ASSERT_STREQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    FILE *f = fopen("x", "wb");
    for (int i = 0; i < 1000; i++)
        fputs("abcdefghijklmnopqrstuvwxyz0123456789", f);
    fclose(f);
    uint8_t d2[32];
    ASSERT_OK(h2t_sha256_file("x", d2));
    h2t_sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        h2t_sha256_update(&s, "abcdefghijklmnopqrstuvwxyz0123456789", 36);
    h2t_sha256_final(&s, d);
    ASSERT(memcmp(d, d2, 32) == 0);
    ASSERT_EQ(h2t_sha256_file("missing", d2), H2T_EIO);
    ASSERT_CONTAINS(h2t_err_detail(), "missing");
}

TEST(common_f16_roundtrip)
{
    ASSERT_EQ(h2t_f32_to_f16(1.0f), 0x3c00);
    ASSERT_EQ(h2t_f32_to_f16(-2.0f), 0xc000);
    ASSERT_EQ(h2t_f32_to_f16(65504.0f), 0x7bff);
    ASSERT_EQ(h2t_f32_to_f16(1e6f), 0x7c00);
    ASSERT_EQ(h2t_f32_to_f16(5.9604645e-8f), 0x0001);
    for (uint32_t h = 0; h < 0x7c00; h++)
        ASSERT_EQ(h2t_f32_to_f16(h2t_f16_to_f32((uint16_t)h)), h);
    ASSERT_NEAR(h2t_f16_to_f32(h2t_f32_to_f16(0.1f)), 0.1, 1e-4);
}

TEST(common_err_detail)
{
    ASSERT_EQ(h2t_err_set(H2T_ENOTFOUND, "layer %s", "conv1"), H2T_ENOTFOUND);
    h2t_err_wrap(H2T_ENOTFOUND, "extraction %d", 3);
    ASSERT_STREQ(h2t_err_detail(), "extraction 3: layer conv1");
    char buf[128];
    ASSERT_STREQ(h2t_err_format(H2T_ENOTFOUND, buf, sizeof buf),
                 "not found: extraction 3: layer conv1");
    ASSERT_STREQ(h2t_strerror(-999), "unknown error");
}

TEST(common_addr_split)
{
    char host[64];
    long port;
    int v6;
    ASSERT_OK(h2t_addr_split("10.1.2.3:7433", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "10.1.2.3");
    ASSERT_EQ(port, 7433);
    ASSERT_EQ(v6, 0);
    ASSERT_OK(h2t_addr_split("8080", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "127.0.0.1");
    ASSERT_EQ(port, 8080);
    ASSERT_OK(h2t_addr_split("localhost:0", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "127.0.0.1");
    ASSERT_EQ(port, 0);
    ASSERT_OK(h2t_addr_split("[::1]:9", "a", host, sizeof host, &port, &v6));
    ASSERT_STREQ(host, "::1");
    ASSERT_EQ(v6, 1);
    ASSERT_EQ(h2t_addr_split("h:70000", "listen address", host, sizeof host, &port, &v6),
              H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "listen address 'h:70000': bad port '70000'");
    ASSERT_EQ(h2t_addr_split("[::1]9", "a", host, sizeof host, &port, &v6), H2T_EINVAL);
    ASSERT_EQ(h2t_addr_split("h:", "a", host, sizeof host, &port, &v6), H2T_EINVAL);
    char tiny[4];
    ASSERT_EQ(h2t_addr_split("longhost:1", "a", tiny, sizeof tiny, &port, &v6), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "too long");
}
