"""What the panels share: the 404 rule, choice lists and JSON checks."""

import json

from django import http
from django.utils.translation import gettext_lazy as _

from horizon import exceptions as horizon_exceptions
from horizon import forms

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


def function_choices(request):
    try:
        functions = api.function_list(request)
    except Exception:
        horizon_exceptions.handle(request,
                                  _('Unable to retrieve functions.'))
        functions = []
    choices = [(f.id, f.name or f.id) for f in functions]
    return [('', _('Select a function'))] + sorted(choices,
                                                   key=lambda c: c[1])


def alias_choices(request, function_id=None):
    try:
        aliases = api.alias_list(request, function_id)
    except Exception:
        horizon_exceptions.handle(request, _('Unable to retrieve aliases.'))
        aliases = []
    return [('', _('None: use the function and version'))] + [
        (a.name, '%s (%s v%s)' % (a.name, a.function_id[:8],
                                  a.function_version)) for a in aliases]


def runtime_names(request):
    """{runtime id: runtime}; empty when they cannot be read."""
    try:
        return {r.id: r for r in api.runtime_list(request)}
    except Exception:
        horizon_exceptions.handle(request, _('Unable to retrieve runtimes.'))
        return {}


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
