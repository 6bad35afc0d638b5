/* jwt_vectors.h — RS256 vectors made by independent tools, shared by
 * test_jwt_verify.c and tests/fuzz/fuzz_jwt.c (how they were made: the
 * header of test_jwt_verify.c).  V_JWKS is jose's exportJWK of key k2's public
 * key with an EC key beside it; V_JWKS_K2 a token jose signed with k2. */
#ifndef AURORA_TEST_JWT_VECTORS_H
#define AURORA_TEST_JWT_VECTORS_H

#define ISS "chat@system.gserviceaccount.com"
#define AUD "https://aurora.example/google-chat/events"
#define T0 1700000100 /* inside every token's lifetime */

static const char V_JWKS_K2[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsyIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZWFjY291bnQuY29tIi"
    "wiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQiOjE3MDAwMDAwMDAs"
    "ImV4cCI6MTcwMDAwMzYwMH0.oi28cK7DkUP_oDkn3ZfVUx0-FsxNjxv-exh2NcMAYChhxUcyNQp36SuhZHfwwyDBzl"
    "oy95NGWRtH2Zb0-aBdsHZx2252usKVz1mg9dxUMEoRAjdqSpF9OHpuyeqyjdd1QEw62Tmlx7EZL7wVREOMHkeVBWwU"
    "N0M5As60V1ngU0WjtoA_I-0RsBthXeMiT574Ei-CUQsfFbG43EQgVO2BfQP4TIbh5yRtPliPsm0N4qn47XH_bNQTE0"
    "Lzgh9lgxN4CO1Xue8bJaClsC6WhVYMocqjWPmgcFyFjWkEnN6lGjgXycJEzSu3HbJc9d3jwaln85dBRVh8QRN-YT6c"
    "D8KgNQ";

static const char V_JWKS[] =
    "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"x\",\"y\":\"y\"},{\"kt"
    "y\":\"RSA\",\"n\":\"3BeAwq-hhIHYJA7JOwNcyM_Jr4geclefWY-qNQYgNkOO-PdYEMcB4f_3SWmBYhGQLh3j8I"
    "SpwkAF5RBQanHexe-JZFxb4fgUlEXsu1Pob__Tr7mA9si1aDACFBin-CfmS5M2uYUaIdOZAHhvbn0YlvSFu4eXAUnb"
    "B9YhE65pPdR4H3YG_nVgz1-TIk4uRlSmCMlX-d_Vw1VBO4fyFglJRwj_x87UfrnYcbuWQL5110_QoK6Qr90UHQ_AQ0"
    "1V5XBl7Ohxgp4ok8mvgZD-q_s-WAcfK3aLP1fS2ZfnXYttxOZboahkioTklhJ4-HOBwaXEbgOV1SjJFs3QfnbsQrIM"
    "LQ\",\"e\":\"AQAB\",\"kid\":\"k2\",\"alg\":\"RS256\",\"use\":\"sig\"}]}";

#endif
