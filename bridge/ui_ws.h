/*
 * ui_ws.h - the dashboard endpoint, /ws/ui (ui_ws.c): its row for ws.c,
 * and how many dashboards are connected.
 */
#ifndef PANKHA_UI_WS_H
#define PANKHA_UI_WS_H

#include "ws.h"

extern const struct ws_endpoint ui_ws_endpoint;

int			ui_init(void);
int			ui_count(void);

#endif							/* PANKHA_UI_WS_H */
