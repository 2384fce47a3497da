/*
 * agent_ws.h - the agent endpoint, /ws/agent (agent_ws.c): its row for
 * ws.c.
 */
#ifndef PANKHA_AGENT_WS_H
#define PANKHA_AGENT_WS_H

#include "ws.h"

extern const struct ws_endpoint agent_ws_endpoint;

#endif							/* PANKHA_AGENT_WS_H */
