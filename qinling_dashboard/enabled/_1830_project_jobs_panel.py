PANEL = 'jobs'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'functions'
ADD_PANEL = 'qinling_dashboard.content.jobs.panel.Jobs'
