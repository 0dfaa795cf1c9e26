PANEL = 'runtimes'
PANEL_DASHBOARD = 'admin'
PANEL_GROUP = 'admin'
ADD_PANEL = 'qinling_dashboard.content.admin_runtimes.panel.Runtimes'
