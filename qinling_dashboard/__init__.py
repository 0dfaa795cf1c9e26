"""qinling_dashboard: qinling-go's functions in the OpenStack dashboard.

A Horizon plugin: the files in enabled/ add a "Functions" panel group to the
project dashboard (functions, executions, jobs, runtimes) and a Runtimes panel
to the admin dashboard. It talks to the function-engine endpoint of the
user's Keystone catalog with the user's token (api/qinling.py).
"""
