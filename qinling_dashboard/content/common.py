"""What the panels share: the 404 rule, choice lists, JSON checks, paged
lists newest first, and the table actions and tabs of one shape."""

import json

from django import http
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from horizon import exceptions as horizon_exceptions
from horizon import forms
from horizon import tables
from horizon import tabs

from qinling_dashboard.api import qinling as api
from qinling_dashboard import exceptions

POLICY_SCOPE = 'function-engine'


def get_or_404(getter, request, object_id, redirect):
    """getter(request, id), with the API's 404 as Django's.

    Another project's id answers 404 from the API too, so a pasted URL gives
    Horizon's not-found page, never the object. Any other error goes back to
    redirect with the server's message.
    """
    try:
        return getter(request, object_id)
    except exceptions.QinlingNotFound:
        raise http.Http404()
    except Exception:
        horizon_exceptions.handle(request, redirect=redirect)


def listed(request, what, call, *args):
    """call(request, *args), or nothing with Horizon's message."""
    try:
        return call(request, *args)
    except Exception:
        horizon_exceptions.handle(request,
                                  _('Unable to retrieve %s.') % what)
        return []


def function_choices(request):
    functions = listed(request, _('functions'), api.function_list)
    choices = [(f.id, f.name or f.id) for f in functions]
    return [('', _('Select a function'))] + sorted(choices,
                                                   key=lambda c: c[1])


def alias_choices(request, function_id=None):
    aliases = listed(request, _('aliases'), api.alias_list, function_id)
    return [('', _('None: use the function and version'))] + [
        (a.name, '%s (%s v%s)' % (a.name, a.function_id[:8],
                                  a.function_version)) for a in aliases]


def runtime_names(request):
    """{runtime id: runtime}; empty when they cannot be read."""
    return {r.id: r for r in listed(request, _('runtimes'),
                                    api.runtime_list)}


def clean_json_input(value):
    """Input travels as a string, which the server passes on to functions
    (a JSON object as keyword arguments). The form asks for JSON; the API
    would take any string. An empty value is no input."""
    if value in (None, ''):
        return None
    try:
        json.loads(value)
    except ValueError as e:
        raise forms.ValidationError(
            _('The input is not valid JSON: %s') % e)
    return value


class RunTargetForm(forms.SelfHandlingForm):
    """What an execution or a job runs: a function's version, or an alias."""

    function_id = forms.ThemableChoiceField(label=_('Function'),
                                            required=False)
    function_version = forms.IntegerField(
        label=_('Version'), required=False, min_value=0, initial=0,
        help_text=_('0 runs the latest code.'))
    function_alias = forms.ThemableChoiceField(
        label=_('Alias'), required=False,
        help_text=_('When chosen, runs what the alias points at; function '
                    'and version are ignored.'))

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields['function_id'].choices = function_choices(request)
        self.fields['function_alias'].choices = alias_choices(request)

    def clean(self):
        data = super().clean()
        if not data.get('function_id') and not data.get('function_alias'):
            raise forms.ValidationError(
                _('Choose a function or an alias to run.'))
        return data

    @staticmethod
    def target(data):
        """The API's keyword arguments for the chosen target."""
        return {'function_id': data.get('function_id') or None,
                'function_version': data.get('function_version') or 0,
                'function_alias': data.get('function_alias') or None}


def form_error(form, request, error):
    """A failed API call in a form's handle(): the server's faultstring at
    the top of the form, which stays open; anything else is Horizon's."""
    if isinstance(error, exceptions.QinlingError):
        form.api_error(error.message)
    else:
        horizon_exceptions.handle(request)
    return False


# ------------------------------------------------------------ paged lists

class PagedData(tables.PagedTableMixin):
    """For a view or a tab whose table pages through an API list newest
    first: Horizon's "next" link carries the last row's id (the API's marker,
    sort_dir=desc), its "prev" link the first row's (read oldest first from
    there, then turned round)."""

    def read_page(self, call, what, *args, **filters):
        """call(request, *args, marker=, sort_dir=, **filters) -> (items,
        more); nothing, with Horizon's message, when the API fails."""
        marker, sort_dir = self._get_marker()
        try:
            items, more = call(self.request, *args, marker=marker,
                               sort_dir=sort_dir, **filters)
        except Exception:
            horizon_exceptions.handle(
                self.request, _('Unable to retrieve %s.') % what)
            return []
        if sort_dir == 'asc':
            items.reverse()
            self._has_prev_data, self._has_more_data = more, True
        else:
            self._has_prev_data, self._has_more_data = bool(marker), more
        return items


class PagedIndexView(PagedData, tables.DataTableView):
    """A panel's index: one page of its API list, newest first."""
    template_name = 'horizon/common/_data_table_view.html'

    def get_data(self):
        return self.read_page(self.page_call(), self.what,
                              **self.list_filters())

    def page_call(self):
        raise NotImplementedError

    def list_filters(self):
        return {}


# ---------------------------------------------------------- table actions

class ModalLink(tables.LinkAction):
    """A create action opening its form in a modal."""
    classes = ('ajax-modal',)
    icon = 'plus'


class FunctionModalLink(ModalLink):
    """A create action of a function's detail tab: its URL names the
    function of the page."""
    url_name = None

    def get_link_url(self, datum=None):
        return reverse(self.url_name,
                       args=[self.table.kwargs['function_id']])


class ApiDeleteAction(tables.DeleteAction):
    """Deletes each object with api.<api_call>(request, id). present and
    past are ngettext_lazy(singular, plural, 'count')."""
    present = past = api_call = None

    def action_present(self, count):
        return self.present % {'count': count}

    def action_past(self, count):
        return self.past % {'count': count}

    def delete(self, request, obj_id):
        # Looked up when called, so tests that mock the API module see it.
        getattr(api, self.api_call)(request, obj_id)


class PolledRow(tables.Row):
    """A row that refreshes itself (horizon.ajax) with api.<api_get>."""
    ajax = True
    api_get = None

    def get_data(self, request, object_id):
        return getattr(api, self.api_get)(request, object_id)


# -------------------------------------------------------------------- tabs

class ListTab(tabs.TableTab):
    """A detail tab holding one table, loaded when opened."""
    template_name = 'horizon/common/_detail_table.html'
    preload = False

    def listed(self, what, call, *args):
        return listed(self.request, what, call, *args)
