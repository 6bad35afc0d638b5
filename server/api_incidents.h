/* api_incidents.h — the incident module's routes across its files. */
#ifndef AURORA_API_INCIDENTS_H
#define AURORA_API_INCIDENTS_H

#include "http_types.h"
#include "worker.h"

/* POST /internal/incidents/alerts (api_incident_alerts.c). */
void incidents_alert_route(worker_ctx *w, http_request *req, http_response *resp);

#endif
