/* err.c — names and HTTP statuses of the shared error codes (see err.h). */
#include "err.h"

static const struct {
    int code;
    const char *name;
    int http;
} codes[] = {
    { AUR_OK, "OK", 200 },
    { AUR_NOT_FOUND, "NOT_FOUND", 404 },
    { AUR_CONFLICT, "CONFLICT", 409 },
    { AUR_E_INVALID, "INVALID", 400 },
    { AUR_E_UNAVAILABLE, "UNAVAILABLE", 503 },
    { AUR_E_DENIED, "DENIED", 403 },
    { AUR_E_INTEGRITY, "INTEGRITY", 500 },
    { AUR_E_INTERNAL, "INTERNAL", 500 },
    { AUR_E_TIMEOUT, "TIMEOUT", 504 },
};

const char *aur_err_name(int code)
{
    for (unsigned i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i].code == code)
            return codes[i].name;
    return "UNKNOWN";
}

int aur_err_http_status(int code)
{
    for (unsigned i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i].code == code)
            return codes[i].http;
    return 500;
}
