"""This project's executions and GB-seconds over a period, from
GET /v1/usage (docs/operations.md, "Usage")."""

import datetime

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from horizon import exceptions
from horizon import forms
from horizon import tables

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common
from qinling_dashboard.content.usage import tables as usage_tables


class FunctionUsage(object):
    """One row of function_usages, named after its function when the
    function still exists (usage outlives deleted functions)."""

    def __init__(self, row, functions):
        self.__dict__.update(row)
        function = functions.get(row['function_id'])
        self.function_name = (function.name or function.id) if function \
            else row['function_id']
        self.link = reverse('horizon:project:functions:detail',
                            args=[row['function_id']]) if function else None


def default_period(today=None):
    """From the first of this month to the end of today (UTC)."""
    today = today or datetime.datetime.utcnow().date()
    return today.replace(day=1), today


class IndexView(tables.DataTableView):
    table_class = usage_tables.FunctionUsageTable
    template_name = 'qinling/usage/index.html'
    page_title = _('Function Usage')

    def get_form(self):
        if not hasattr(self, 'form'):
            start, end = default_period()
            data = self.request.GET if 'start' in self.request.GET else {
                'start': start.isoformat(), 'end': end.isoformat()}
            self.form = forms.DateForm(data)
        return self.form

    def get_data(self):
        self.usage = None
        form = self.get_form()
        if not form.is_valid():
            return []
        start, end = form.cleaned_data['start'], form.cleaned_data['end']
        if end < start:
            form.add_error('end', _('The end comes before the start.'))
            return []
        try:
            # end is a whole day: the API's period ends before the next.
            self.usage = api.usage_get(
                self.request, start.isoformat(),
                (end + datetime.timedelta(days=1)).isoformat())
        except Exception:
            exceptions.handle(self.request, _('Unable to retrieve usage.'))
            return []
        functions = {f.id: f for f in common.listed(
            self.request, _('functions'), api.function_list)}
        return [FunctionUsage(row, functions)
                for row in self.usage.get('function_usages') or []]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['form'] = self.get_form()
        context['usage'] = self.usage
        return context
