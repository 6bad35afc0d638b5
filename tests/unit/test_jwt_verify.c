/* test_jwt_verify.c — RS256 verification against a certificate set
 * (server/jwt_verify.c).
 *
 * Every vector below was made by independent tools, never by our signer:
 *   - RSA keys: `openssl genrsa -out k1.pem 2048` (k2 likewise; "small" 1024
 *     bits), certificate `openssl req -x509 -new -key k1.pem -subj /CN=test-k1`;
 *   - tokens V_VALID … V_JWKS_K2: jose 6 (npm) SignJWT / UnsecuredJWT in Node,
 *     iat 1700000000, exp 1700003600, iss chat@system.gserviceaccount.com, aud
 *     https://aurora.example/google-chat/events; V_HS256 is HS256 keyed with
 *     k1's public key PEM (the classic RS/HS confusion); V_JWKS is jose's
 *     exportJWK of k2's public key with an EC key beside it;
 *   - V_OSSL_K1 / V_OSSL_SMALL: header and payload base64url'd by hand and
 *     signed with `openssl dgst -sha256 -sign k1.pem` (resp. small.pem).
 * The certificate set is handed over by a fetch callback that counts its
 * calls, so caching and the refetch rate limit are checked without network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_verify.h"
#include "jwt_vectors.h"


static const char V_VALID[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZW"
    "FjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQi"
    "OjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.gNm2wpGko25mUaflnX572otq-5HsLTHAO23PJFxCBiQgvbSFJE"
    "hDJlFAyGvUZIYPcfMf60kNfulMI8TqmhvGcWKa9Q8yWH3l6f_haNQVq1YsJcUqtaGcJ7r8HqT7liO6HJQT1LGiEJ9w"
    "zh9Mo7v3TSMuj4flvM72yTeOv8HVvr275cx8ZeyVmn3VguwKkrXEys85_mARnhrO0TFsYYdq6Twl6S7ny8tX2aImV3"
    "f9lhkmiGn8CoRm9eNtPIlALGKr2o4fW6ZGJVyKuEwVnCiJwkWOulmjiYZdkRj44prVwioVhc3z_OLN3vmfYZ8_JUiW"
    "c8jgN2Jqokk-mlpv3x9voA";

static const char V_BAD_SIG[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZW"
    "FjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQi"
    "OjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.2YIQLpeROAI2_Kqy1G4EVdW_zURmNcvY-9ULBoGbt9Y0qgzhxI"
    "AVsts3BHqgnmxCz2sueMAGLT9m5zvHN9UapJZ7ZbM1ycp1r6JkxakmT7uZFRkCQfcA1xNfAXSY2sMJFqe33Dv97Hqr"
    "obI0BuVOhH90c5o9mI0ehkBys0AZBe3DZPbK3LFm8r5RzuuExc_wQt0HT2aWYN-juIWUcJmw77QzUcU_DIh8aHlCVC"
    "O27hP4KaRhEmkuiAAENwCfW4atg-Q72vxBvclDZiuv52VGsoR9pxkhKwdon45mTFXaOYR0YCsRyEY6Gvp5fVz73TEs"
    "-eyvVjg4iqWf7mKt9_no_w";

static const char V_UNKNOWN_KID[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6Ims5IiwidHlwIjoiSldUIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZW"
    "FjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQi"
    "OjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.fOLF6Jo6vmOgBb3nlzy1EUAKrW90s5aUYLI_lWJ6bu93NOKvOd"
    "VJIABVqHMDKJPYa4fHGhYLpvawJ4-8W0FxhjcfFZicDiS_SEanesIqBd26KHYSysYPaIQg5GQrt1YdpYHKvAhVmwiJ"
    "g0CARJDetJPOTsQwCJzVvANV9VH2yANg5lx_0t_3dJ0oh8jxNunZ0J3diy-wpYjU72JBz3NevRWAcT80aiQC3An-aj"
    "YuQyj5awdj0N9IFXB62AB5Atuy6HpJmeJwPWN02Ja1EpIgGujarylULH_ZbAanS59a6tkmvGJPRfNXrauZla_B-9bt"
    "tXCtssanQI-_iQZrhxk2tg";

static const char V_NONE[] =
    "eyJhbGciOiJub25lIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZWFjY291bnQuY29tIiwiYXVkIjoiaHR0cH"
    "M6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAw"
    "MzYwMH0.";

static const char V_NONE_KID[] =
    "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZWFjY291bnQuY29tIiw"
    "iYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQiOjE3MDAwMDAwMDAsI"
    "mV4cCI6MTcwMDAwMzYwMH0.";

static const char V_HS256[] =
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZW"
    "FjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQi"
    "OjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.QTjIj3kBrA6qFDskPtIZ1l34EXb56fvUoo8lIKEM60c";

static const char V_WRONG_AUD[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZWFjY291bnQuY29tIi"
    "wiYXVkIjoiaHR0cHM6Ly9ldmlsLmV4YW1wbGUvZ29vZ2xlLWNoYXQvZXZlbnRzIiwiaWF0IjoxNzAwMDAwMDAwLCJl"
    "eHAiOjE3MDAwMDM2MDB9.i-Qi-UFW_LQ4L9Jc1i2LIKtZiWD9uqz0ZQUMvlIHpSf1vy5IzEhJDQD-AwWKlTb5OKVs_"
    "DOr1Gyqrd1zylvHQ1SClOjONeG7JvTaDpXlrM0kwEmqZPn_WcmYu-lP0GQF_e6xmbpaghSbF9SIl1l9EMmWCerGS5-"
    "iRZ0529l0Z7VjNuSnYBrr3d4RceopfkoZB1Ow_VAtekp8oKeIituwsek_VRDzkNGekxVfHneux_r8fedgGqtZCWwMw"
    "5TEKMIcWb3ZwML75ghsERkpbaIjbHdJo1GBeY7jpp_0vVqD7Ozv7aVCSY-eu-zKr4BBaQMOnsWDQby65p0zJlXBY_O"
    "VxA";

static const char V_WRONG_ISS[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJzb21lb25lQGV4YW1wbGUuY29tIiwiYXVkIjoiaHR0cH"
    "M6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAw"
    "MzYwMH0.Df_Rx9o36TUKk_Rzu_nUUNhcl-rYIBn1lCzxEtYxRU8dzJ0XucrTLA3iJ-OV4mqTEceQGJNZx5RBqoxhWJ"
    "PtJRwwvUyI5TyYI5Ji3h9bkrSdT0iJrAvh8kL36f_qPvXppYUsU9ygjfYvV8rxXCR_N1x7rIpGLGm_Sqv52zZJMt2a"
    "z9Sr3X_fd0nYaRqPDIGMsS7OasSTWq2qXspcUIkoBuz2zx4j9PLlw-G6b5w6zm1ZE1X06NS7B6hHF-f2OY5H4Kka9B"
    "6P4H06W8F-CQBDZmfqdPy7koSGbfOj6pcnMMgEeOKzmn0tafz5wnuFhJ4mJc6TrN3AuTJ9KeO0tkUp4g";

static const char V_AUD_ARRAY[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZWFjY291bnQuY29tIi"
    "wiYXVkIjpbIngiLCJodHRwczovL2F1cm9yYS5leGFtcGxlL2dvb2dsZS1jaGF0L2V2ZW50cyJdLCJpYXQiOjE3MDAw"
    "MDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.noR6xAXzSWvKLR7UBpsJt8FcHw8kWapNwTH8AAl6nzeHq42EHjEz8RaKyj"
    "m-8Feahp1o1iQmRNw0cec2scHSJarxo-SqOqzNlXPRQTsm9d6XgVmcNqJu-qAmB3fkD64Cz5XvYFqF_M_CN3veVATF"
    "I-YclQadNxQeCJZ6XlQgrgzlOftIz3lyr5an8o-BVF0czh1-LNNM24EWglUdPotHj4lrd76ztUim6AWwPipLjRONwc"
    "EHDlooJotN7Aqhli8g8f2Adx2jQOjmo4xoMAOS8UerpaLG6-u8lb77jP1_SHAGXN_HbdQg3VJmyowjIkj3hwYP-2gN"
    "APJHw_SonWkhIA";

static const char V_NO_EXP[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZWFjY291bnQuY29tIi"
    "wiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQiOjE3MDAwMDAwMDB9"
    ".lWWKJ3xgSWQukPLYa5wd9sqS8Y4xbWrSQpgv64tLbkU3vBRcjs9eCObqfX_76RhlstaK2QuZdJCpP7FSSOtokSIVq"
    "FlKal9O5CQZYv3qOxe9X5hx6_WhC0GAyLrlR85marvVZ_99FKyPyIFxK9QirPgtCsrs-QX8WgTncM35eBz2hDNs0_I"
    "--Dp1BR3A-fwowdJx6gaz2bb7jXW3PckYiCu4sC0W2M696jdVuX-WS0uAtVftLHSSgzkRBGuszj0Camvqaj-9l9zrr"
    "jouqagVxSLhEfBSfrjj9KmJPelmOuTJFWRtwDRnWiZ5CEG9bRsVMM1zVyBL0RaPZTYXptYiNQ";

static const char V_NBF_FUTURE[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZWFjY291bnQuY29tIi"
    "wiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQiOjE3MDAwMDAwMDAs"
    "ImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNzAwMDAxMDAwfQ.bqmvUwOEr73ujIEIvCUYvi0wCKW6jOFmFO3F3z6FBLq"
    "KarMtVpGkn1q1n-2HBELg7sQRbNbDuEIezuuWDN2KB3KQuZKk833QyYfRS76rbMtS-O2m8AQwKuRlGldW8UdLRi1AO"
    "MJZm4A__bsDNgG3xdAmOMWZ5ML1DNLU6Sl_N0t4tfLrjyR6RrXW-C0ZWFbpLjNURK8M45mDx37DBa5Bn9z4LpW3yd4"
    "1cAcd0vSoMg5to-OKojp0hPaHwT1xYnRCb-tnylG8RP-gWdzaPGGMfX53UmSDEzFRXR-G5M8brgTegyxxtOZjG12ZB"
    "jWmUxZqYTaK1Rbs6ecdfwpycVU4WA";

static const char V_CRIT[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwiY3JpdCI6WyJiNjQiXSwiYjY0Ijp0cnVlfQ.eyJpc3MiOiJjaGF0QHN"
    "5c3RlbS5nc2VydmljZWFjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhd"
    "C9ldmVudHMiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.PWbY8az8sjJW1Ogek0uh0aZWbZd82p6"
    "6v9aHCkzB45o3w17YtYFN4HW1fPCy7Xme688TfWQP4ugta18SPLbZFBBImenaj4KIy3SO83kJn_iJ0yF4Nn5RVwSnC"
    "TF9e2h1dybSRwXLOodo1a3onpvWgdbiqNQpiHOYIZbKu-sUi6JEyKhBb71oiy3F09cWop8yfgaXMZEHmtJ9hUgY7xH"
    "Ql7wV8cFlOthzBnfrG-cl5dgq5sHUwv9pDegPBl8k5aBNGxyU1EqGeBnb5ct_51p8O0xiA6pzJ1dFlFGz4Sjvqg-cv"
    "Ci8126BShBT8_rFEI1y8ii42cS7kIfd5ExNT75yig";

static const char V_OSSL_K1[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2VydmljZW"
    "FjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJpYXQi"
    "OjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwic3ViIjoib3BlbnNzbC1jbGkifQ.UKhGN086Ddfz1mzCCFOomGh"
    "MTUJSNLtLmeGOZZiWDfi1L2Hu2r2M2mnLQZ44P_8Uzb4DYxsWbBW1j540Th2sspuJDCYUeVjIPBv---rEinFWHJ-vq"
    "ZoHcwXafAOQgwhhgoWHb0-sw1x-QGPpL-4IhMLZONatKe4XIs4A9_w62pOwD_KCrOirgFIgd1Filn2IVd_2RA8hcnJ"
    "IlUrr1jt42i9KeHrj3_tdipzf_dFZqjckwG8w37S_nDjIvDIWrQAJx5uVVaBDlSMpK72z3v-sIXaq9xzitKFkpTPY1"
    "f1BQZ6ItZb0k5kyrkVvSrjpk_HjKwBeHge-Kw8UPAfydsdEoQ";

static const char V_OSSL_SMALL[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InNtYWxsIiwidHlwIjoiSldUIn0.eyJpc3MiOiJjaGF0QHN5c3RlbS5nc2Vydm"
    "ljZWFjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9hdXJvcmEuZXhhbXBsZS9nb29nbGUtY2hhdC9ldmVudHMiLCJp"
    "YXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwic3ViIjoib3BlbnNzbC1jbGkifQ.K-4_uFOxce-2HSVRS1u"
    "u4W7dkpPGAhrLgJ2wUA2-9PFpYLQ39KO-ggb8h_JDMLcnb7Qs9MgR8mfyvFGhL5-6dXXOtJOn-sN9wHaol4K00XtYK"
    "fnLh8i69wU-_yphNPKAhGRcvvuO_OYK5lltpYqrrj7XkBbT7RtDiQIwz1wMhi4";

static const char V_CERT_K1[] =
    "-----BEGIN CERTIFICATE-----\nMIIDBTCCAe2gAwIBAgIUcDmM2el1vCxHmQOYUhrwcu52j5swDQYJKoZIhvcNA"
    "QEL\nBQAwEjEQMA4GA1UEAwwHdGVzdC1rMTAeFw0yNjEyMDMwMzM5MzNaFw0zNjExMzAw\nMzM5MzNaMBIxEDAOBgN"
    "VBAMMB3Rlc3QtazEwggEiMA0GCSqGSIb3DQEBAQUAA4IB\nDwAwggEKAoIBAQC2I9waEY6g/vI2DbD5gpODn0ghJc3"
    "+hWzhiFwvQQqMxz7vMFYX\nclYHUqXBI8MCmVCgotV8qFzCKmuJWS4/af80rQIT2WxT/o2rF1NJ3xBU7ZfXaWkO\n0"
    "wnvobM3Qn+NxB0TNsIWLGRPxuSgwBrwXqVfI/Lc3F81zXLM101Ba9a3e27LCi7u\nqE1GxbkUXbtWt7a0eqFzmRK95"
    "HOA+YNewproKThyzO5tN7pwZ8CMzvbXraY0p0VR\nb6jBCp0ZpO1VmVUhXh4ubOxzOwz+vHKyAotanpbqOkcD4UTFc"
    "HQf3KnoRs4Gnavc\n36Tm40lkI/QBjXCk/0Oz3lfO3/7AALI809lXAgMBAAGjUzBRMB0GA1UdDgQWBBQ/\nqzT0f/4"
    "Ucdg8l/D/1/1I5Q5d4jAfBgNVHSMEGDAWgBQ/qzT0f/4Ucdg8l/D/1/1I\n5Q5d4jAPBgNVHRMBAf8EBTADAQH/MA0"
    "GCSqGSIb3DQEBCwUAA4IBAQBezuK8WIxX\nBSQ75R3KESoFOaIU/UB4Zaj5P0cX+j1PpmY0A5iwgolqpSIwNx1QlWJ"
    "/WBOWq86y\nIstupO/0ENtSFHDOanXQT+HMjac2m6e2yhD2A2jo1+hcI8xo6j6nHRaoorCfyq6k\nmgetD4FXOEbGr"
    "aBFExkhPdRR+ft/h7cmCwXYOOS9KkbWc4uTvUp+HAgcvFzSgRS8\nbzXlMdGcRBpDv5OzAeT/KTQ2/hpL2wfCDwGjd"
    "0MxHnhG+Tm/YSwO6o2KQkRxMllt\nIPozrz2JRkafctofsJQx2xun3xfO0oYLNHgVGSk5NTrmaHOjzkLArIQbYZsWQ"
    "HDP\nlC3yGn6V+uJ7\n-----END CERTIFICATE-----\n";

static const char V_CERT_SMALL[] =
    "-----BEGIN CERTIFICATE-----\nMIIB/DCCAWWgAwIBAgIUBaSQYRG+pK//s6wHCP9cEhsV2OQwDQYJKoZIhvcNA"
    "QEL\nBQAwEDEOMAwGA1UEAwwFc21hbGwwHhcNMjYxMjAzMDMzOTMzWhcNMzYxMTMwMDMz\nOTMzWjAQMQ4wDAYDVQQ"
    "DDAVzbWFsbDCBnzANBgkqhkiG9w0BAQEFAAOBjQAwgYkC\ngYEAwE8px2czGTsgeDbD6mAsT8SL0AWRODUhXZdVKNh"
    "XlFiH6fod0z/lW4lqD+2n\na9RSTl4vWKjTOrVjvIE9/Jcr30r1ULfazyiAGpW1vktYA6gUefEvknVs4Kge1EEP\nU"
    "CN2hH4AdsJygCBn32n/UhuJt6EAB8Ge8WLwgfvN6N5nna8CAwEAAaNTMFEwHQYD\nVR0OBBYEFO48S/F2sXJE2u/F5"
    "3bIPff047WyMB8GA1UdIwQYMBaAFO48S/F2sXJE\n2u/F53bIPff047WyMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIh"
    "vcNAQELBQADgYEA\nJiBzMUWM5u4CoScrn9aVKb/U26b1CUVzKZC0kwK80b85TtrEDfk9VyK5TklWl9LP\nZA7lMCw"
    "b4Qr5nJ1CRF3j6cwapeAQ4zAStrCYvkDRBwcJjFAIJNmQTg9/WCeXKn4L\nPLr0VoQCv9QtGL/VgN8OJxS2PyuyQtt"
    "Sbn8XC2Sk4TM=\n-----END CERTIFICATE-----\n";

/* ---- a fetch that serves a chosen document ------------------------------------------ */

static const char *g_doc;        /* NULL: the fetch fails */
static const char *g_cc = "";    /* Cache-Control answered */
static int g_fetches;

static int fake_fetch(const char *url, long timeout_ms, char **body, size_t *len, char *cc,
                      size_t cc_cap, char *err, size_t errlen)
{
    (void)url;
    (void)timeout_ms;
    g_fetches++;
    if (!g_doc) {
        snprintf(err, errlen, "publisher down");
        return -1;
    }
    *body = strdup(g_doc);
    *len = strlen(g_doc);
    snprintf(cc, cc_cap, "%s", g_cc);
    return 0;
}

/* {"k1": cert_k1} (Google's x509 format). */
static char *x509_doc(const char *kid, const char *pem)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, kid, pem);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static jwt_verify_opts opts(int64_t now)
{
    return (jwt_verify_opts){ .certs_url = "https://certs.example/x509", .issuer = ISS,
                              .audience = AUD, .now = now, .fetch = fake_fetch };
}

static jwt_verify_result verify(jwt_certs *set, const char *tok, int64_t now)
{
    char err[256];
    jwt_verify_opts o = opts(now);
    cJSON *claims = NULL;
    jwt_verify_result r = jwt_verify_rs256(set, tok, &o, &claims, err, sizeof(err));
    if (r == JWT_OK) {
        assert_non_null(claims);
        assert_string_equal(cJSON_GetObjectItem(claims, "iss")->valuestring, ISS);
    } else {
        assert_null(claims);
        assert_true(err[0] != '\0');
    }
    cJSON_Delete(claims);
    return r;
}

static char *g_x509_k1;

static int setup(void **state)
{
    (void)state;
    g_x509_k1 = x509_doc("k1", V_CERT_K1);
    g_doc = g_x509_k1;
    g_cc = "public, max-age=19800, must-revalidate, no-transform";
    g_fetches = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g_x509_k1);
    return 0;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_valid_tokens_from_jose_and_openssl(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    assert_int_equal(verify(&set, V_VALID, T0), JWT_OK);
    assert_int_equal(verify(&set, V_OSSL_K1, T0), JWT_OK);
    assert_int_equal(verify(&set, V_AUD_ARRAY, T0), JWT_OK);
    assert_int_equal(g_fetches, 1); /* one fetch, then the cache */
    assert_int_equal(jwt_certs_count(&set), 1);
    jwt_certs_clear(&set);
}

static void test_refused_headers(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    assert_int_equal(verify(&set, V_NONE, T0), JWT_BAD_ALG); /* jose's UnsecuredJWT */
    assert_int_equal(verify(&set, V_NONE_KID, T0), JWT_BAD_ALG);
    assert_int_equal(verify(&set, V_HS256, T0), JWT_BAD_ALG);
    assert_int_equal(verify(&set, V_CRIT, T0), JWT_BAD_ALG);
    assert_int_equal(g_fetches, 0); /* refused before any key was looked up */
    jwt_certs_clear(&set);
}

static void test_signature_and_claims(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    assert_int_equal(verify(&set, V_BAD_SIG, T0), JWT_BAD_SIGNATURE);
    assert_int_equal(verify(&set, V_WRONG_AUD, T0), JWT_BAD_AUDIENCE);
    assert_int_equal(verify(&set, V_WRONG_ISS, T0), JWT_BAD_ISSUER);
    assert_int_equal(verify(&set, V_NO_EXP, T0), JWT_EXPIRED);
    /* exp 1700003600 with 60 s of skew; iat 1700000000 */
    assert_int_equal(verify(&set, V_VALID, 1700003600 + 59), JWT_OK);
    assert_int_equal(verify(&set, V_VALID, 1700003600 + 60), JWT_EXPIRED);
    assert_int_equal(verify(&set, V_VALID, 1700000000 - 60), JWT_OK);
    assert_int_equal(verify(&set, V_VALID, 1700000000 - 61), JWT_NOT_YET_VALID);
    assert_int_equal(verify(&set, V_NBF_FUTURE, T0), JWT_NOT_YET_VALID);
    assert_int_equal(verify(&set, V_NBF_FUTURE, 1700001000), JWT_OK);
    jwt_certs_clear(&set);
}

static void test_tampering_and_malformed(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    char *t = strdup(V_VALID);
    /* flip one payload character: the signature no longer matches */
    char *p = strchr(t, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_equal(verify(&set, t, T0), JWT_BAD_SIGNATURE);
    free(t);
    /* the signature truncated */
    t = strdup(V_VALID);
    t[strlen(t) - 4] = '\0';
    assert_int_equal(verify(&set, t, T0), JWT_BAD_SIGNATURE);
    free(t);
    static const char *const bad[] = {
        "", "abc", "a.b", "a.b.c.d", "..", "eyJhbGciOiJSUzI1NiJ9..sig",
        "e30.e30.c2ln",                 /* {} header: no alg */
        "bm90IGpzb24.e30.c2ln",         /* header not JSON */
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2=n", /* '=' in the signature */
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30+.c2ln",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jwt_verify_result r = verify(&set, bad[i], T0);
        assert_true(r == JWT_MALFORMED || r == JWT_BAD_ALG);
    }
    char *big = malloc(JWT_VERIFY_MAX_TOKEN + 2);
    memset(big, 'A', JWT_VERIFY_MAX_TOKEN + 1);
    big[JWT_VERIFY_MAX_TOKEN + 1] = '\0';
    assert_int_equal(verify(&set, big, T0), JWT_MALFORMED);
    free(big);
    assert_int_equal(verify(&set, NULL, T0), JWT_MALFORMED);
    jwt_certs_clear(&set);
}

static void test_unknown_kid_refetch_is_rate_limited(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    assert_int_equal(verify(&set, V_VALID, T0), JWT_OK);
    assert_int_equal(g_fetches, 1);
    /* an unknown kid soon after the fetch: no new fetch (a burst of forged
     * kids costs the publisher nothing) */
    for (int i = 0; i < 20; i++)
        assert_int_equal(verify(&set, V_UNKNOWN_KID, T0 + 1), JWT_UNKNOWN_KID);
    assert_int_equal(g_fetches, 1);
    /* past the interval: exactly one fetch, still unknown */
    assert_int_equal(verify(&set, V_UNKNOWN_KID, T0 + JWT_CERTS_DEFAULT_REFETCH_S), JWT_UNKNOWN_KID);
    assert_int_equal(verify(&set, V_UNKNOWN_KID, T0 + JWT_CERTS_DEFAULT_REFETCH_S + 1), JWT_UNKNOWN_KID);
    assert_int_equal(g_fetches, 2);
    /* key rotation: the publisher now has k2 (JWKS format); its first token
     * makes the one refetch and verifies */
    g_doc = V_JWKS;
    assert_int_equal(verify(&set, V_JWKS_K2, T0 + 2 * JWT_CERTS_DEFAULT_REFETCH_S + 2), JWT_OK);
    assert_int_equal(g_fetches, 3);
    assert_int_equal(jwt_certs_count(&set), 1); /* the EC key was skipped */
    assert_int_equal(verify(&set, V_VALID, T0 + 2 * JWT_CERTS_DEFAULT_REFETCH_S + 3), JWT_UNKNOWN_KID);
    g_doc = g_x509_k1;
    jwt_certs_clear(&set);
}

static void test_max_age_and_stale_keys(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    g_cc = "max-age=100";
    assert_int_equal(verify(&set, V_VALID, T0), JWT_OK);
    assert_int_equal(verify(&set, V_VALID, T0 + 99), JWT_OK);
    assert_int_equal(g_fetches, 1);
    assert_int_equal(verify(&set, V_VALID, T0 + 100), JWT_OK); /* expired: fetched again */
    assert_int_equal(g_fetches, 2);
    /* the publisher goes down: the known key keeps working (stale) */
    g_doc = NULL;
    assert_int_equal(verify(&set, V_VALID, T0 + 250), JWT_OK);
    assert_int_equal(g_fetches, 3);
    /* a failed fetch is not repeated within the second */
    assert_int_equal(verify(&set, V_VALID, T0 + 250), JWT_OK);
    assert_int_equal(g_fetches, 3);
    jwt_certs_clear(&set);
    /* nothing cached and nothing fetchable */
    assert_int_equal(verify(&set, V_VALID, T0), JWT_CERTS_UNAVAILABLE);
    g_doc = g_x509_k1;
    g_cc = "";
    jwt_certs_clear(&set);

    assert_int_equal(jwt_cache_max_age("public, max-age=19303, must-revalidate, no-transform"), 19303);
    assert_int_equal(jwt_cache_max_age("max-age=5"), JWT_CERTS_MIN_AGE_S);
    assert_int_equal(jwt_cache_max_age("max-age=99999999999999999999"), JWT_CERTS_MAX_AGE_S);
    assert_int_equal(jwt_cache_max_age("max-age=\"120\""), 120);
    assert_int_equal(jwt_cache_max_age("max-age=12x"), JWT_CERTS_DEFAULT_AGE_S);
    assert_int_equal(jwt_cache_max_age("no-store"), JWT_CERTS_MIN_AGE_S);
    assert_int_equal(jwt_cache_max_age(""), JWT_CERTS_DEFAULT_AGE_S);
    assert_int_equal(jwt_cache_max_age(NULL), JWT_CERTS_DEFAULT_AGE_S);
}

static void test_bad_certificate_sets(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    char err[256];
    char *small = x509_doc("small", V_CERT_SMALL);
    static const char *const bad[] = {
        "", "[]", "{}", "{\"k1\": 5}", "{\"k1\": \"not a certificate\"}",
        "{\"keys\": []}", "{\"keys\": [{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
        "{\"k1\": \"-----BEGIN CERTIFICATE-----\\ngarbage\\n-----END CERTIFICATE-----\\n\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(jwt_certs_load(&set, "u", bad[i], strlen(bad[i]), 100, T0, err,
                                        sizeof(err)), -1);
    /* a 1024-bit key is refused, and so is every token it signed */
    assert_int_equal(jwt_certs_load(&set, "u", small, strlen(small), 100, T0, err, sizeof(err)), -1);
    g_doc = small;
    assert_int_equal(verify(&set, V_OSSL_SMALL, T0), JWT_CERTS_UNAVAILABLE);
    g_doc = g_x509_k1;
    free(small);
    g_fetches = 0;
    assert_int_equal(jwt_certs_load(&set, "https://certs.example/x509", g_x509_k1,
                                    strlen(g_x509_k1), 100, T0, err, sizeof(err)), 0);
    assert_int_equal(verify(&set, V_VALID, T0), JWT_OK);
    assert_int_equal(g_fetches, 0); /* loaded by hand, no fetch */
    jwt_certs_clear(&set);
}

/* ---- a publisher that hangs until the test lets it answer ------------------------------ */

static pthread_mutex_t g_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cv = PTHREAD_COND_INITIALIZER;
static int g_gate_in;   /* fetches that reached the publisher */
static int g_gate_open; /* the publisher may answer (it fails: it is down) */

static int gate_fetch(const char *url, long timeout_ms, char **body, size_t *len, char *cc,
                      size_t cc_cap, char *err, size_t errlen)
{
    (void)url, (void)timeout_ms, (void)body, (void)len, (void)cc, (void)cc_cap;
    pthread_mutex_lock(&g_gate_mu);
    g_fetches++;
    g_gate_in++;
    pthread_cond_broadcast(&g_gate_cv);
    while (!g_gate_open)
        pthread_cond_wait(&g_gate_cv, &g_gate_mu);
    pthread_mutex_unlock(&g_gate_mu);
    snprintf(err, errlen, "publisher timed out");
    return -1;
}

typedef struct {
    jwt_certs *set;
    int64_t now;
    jwt_verify_result r;
    int done;
} gate_call;

static void *gate_verify(void *arg)
{
    gate_call *c = arg;
    char err[256];
    jwt_verify_opts o = opts(c->now);
    o.fetch = gate_fetch;
    jwt_verify_result r = jwt_verify_rs256(c->set, V_VALID, &o, NULL, err, sizeof(err));
    pthread_mutex_lock(&g_gate_mu);
    c->r = r;
    c->done = 1;
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
    return NULL;
}

/* Waits (at most 5 s) until pred holds; 1 if it does.  g_gate_mu held. */
static int gate_wait(const int *flag, int at_least)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (*flag < at_least)
        if (pthread_cond_timedwait(&g_gate_cv, &g_gate_mu, &until) == ETIMEDOUT)
            return *flag >= at_least;
    return 1;
}

/* a verifies at now_a and hangs in the fetch; then b verifies at now_b;
 * the fetch fails once b has answered (at most 5 s later) or, when
 * b_may_wait, at once.  1 if b answered while a's fetch still hung. */
static int two_verifiers(jwt_certs *set, gate_call *a, int64_t now_a, gate_call *b,
                         int64_t now_b, int b_may_wait)
{
    *a = (gate_call){ set, now_a, JWT_OK, 0 };
    *b = (gate_call){ set, now_b, JWT_OK, 0 };
    g_gate_in = 0;
    g_gate_open = 0;
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, gate_verify, a), 0);
    pthread_mutex_lock(&g_gate_mu);
    assert_true(gate_wait(&g_gate_in, 1));
    pthread_mutex_unlock(&g_gate_mu);
    assert_int_equal(pthread_create(&tb, NULL, gate_verify, b), 0);
    pthread_mutex_lock(&g_gate_mu);
    int b_answered = !b_may_wait && gate_wait(&b->done, 1);
    g_gate_open = 1;
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    return b_answered;
}

/* A publisher that hangs (Google unreachable, the fetch runs to its
 * timeout): one fetch at a time for everybody.  The verifiers behind it
 * took their turn at the lock and each fetched again (N queued events: N
 * timeouts end to end, every one holding an outbound worker); while it
 * runs, known keys keep serving; one with no key takes its outcome. */
static void test_one_fetch_while_the_publisher_hangs(void **state)
{
    (void)state;
    jwt_certs set = JWT_CERTS_INIT;
    gate_call a, b;
    g_cc = "max-age=100";
    assert_int_equal(verify(&set, V_VALID, T0), JWT_OK);
    assert_int_equal(g_fetches, 1);
    /* expired: the first verifier fetches and hangs; a second one, five
     * seconds later, is answered with the known key */
    assert_true(two_verifiers(&set, &a, T0 + 200, &b, T0 + 205, 0)); /* not held behind it */
    assert_int_equal(g_fetches, 2); /* and it did not fetch again after it */
    assert_int_equal(a.r, JWT_OK);
    assert_int_equal(b.r, JWT_OK);
    jwt_certs_clear(&set);

    /* no key at all: the second waits for the fetch under way and takes its
     * failure */
    two_verifiers(&set, &a, T0, &b, T0 + 5, 1);
    assert_int_equal(a.r, JWT_CERTS_UNAVAILABLE);
    assert_int_equal(b.r, JWT_CERTS_UNAVAILABLE);
    g_cc = "";
    jwt_certs_clear(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_tokens_from_jose_and_openssl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signature_and_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_kid_refetch_is_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_age_and_stale_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_certificate_sets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_fetch_while_the_publisher_hangs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
